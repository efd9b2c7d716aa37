"""Settings: TOML file, environment over file, refused weak secrets, every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from citypilot.config import Settings, load_settings

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_toml_file_then_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "city.toml"
    config.write_text('store = "postgres"\nport = 9001\ndata_dir = "/srv/city"\n')
    monkeypatch.setenv("CITYPILOT_PORT", "9002")
    settings = load_settings(config)
    assert settings.store == "postgres"
    assert settings.port == 9002
    assert settings.data_dir == Path("/srv/city")


def test_command_line_overrides_beat_the_file(tmp_path):
    config = tmp_path / "city.toml"
    config.write_text("port = 9001\n")
    assert load_settings(config, port=9005).port == 9005


def test_unknown_and_bad_settings_are_refused(tmp_path):
    config = tmp_path / "city.toml"
    config.write_text('stor = "postgres"\n')
    with pytest.raises(ValidationError, match="stor"):
        load_settings(config)
    with pytest.raises(ValidationError, match="jwt_secret"):
        Settings(jwt_secret="secret")
    with pytest.raises(ValidationError, match="tenants_allowed: NGSILD-Tenant must be a letter"):
        Settings(tenants_allowed=["dijon", "Dijon Métropole"])
    with pytest.raises(ValidationError, match="max_tenants"):
        Settings(max_tenants=-1)


def test_signing_key_is_generated_once_and_kept(tmp_path):
    settings = Settings(data_dir=tmp_path)
    key = settings.signing_key()
    assert len(key) >= 32 and Settings(data_dir=tmp_path).signing_key() == key
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0


def test_every_setting_is_documented():
    text = DOCS.read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert not missing, f"settings without docs in {DOCS.name}: {missing}"
