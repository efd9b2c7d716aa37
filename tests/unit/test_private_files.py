"""The data directory and database files are private to their owner (issue 7, defect 8)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from citypilot.config import Settings
from citypilot.model.entity import Entity
from citypilot.store.sqlite import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The common umask 022, which leaves new files readable by every local user."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_store_creates_0700_dirs_and_0600_database_files(tmp_path: Path, open_umask):
    data = tmp_path / "new" / "data"
    store = SQLiteStore(data / "city.db")
    await store.open()
    try:
        await store.create_entities([Entity("urn:ngsi-ld:Streetlight:p1", "Streetlight", {})], 0.0)
        assert mode(tmp_path / "new") == 0o700 and mode(data) == 0o700
        for name in ("city.db", "city.db-wal", "city.db-shm", "audit.db"):
            assert mode(data / name) == 0o600, name
    finally:
        await store.close()


async def test_an_existing_world_readable_database_is_made_private(tmp_path: Path, open_umask):
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    await store.close()
    os.chmod(tmp_path / "city.db", 0o644)
    store = SQLiteStore(tmp_path / "city.db")
    await store.open()
    await store.close()
    assert mode(tmp_path / "city.db") == 0o600


def test_generated_signing_key_lives_in_a_private_dir(tmp_path: Path, open_umask):
    settings = Settings(data_dir=tmp_path / "fresh")
    assert len(settings.signing_key()) > 32
    assert mode(tmp_path / "fresh") == 0o700
    assert mode(tmp_path / "fresh" / "jwt-secret") == 0o600
