"""Files only their owner may read: the data directory, the database, secrets.

The embedded store holds password and device-key hashes, so CityPilot creates
its data directories 0700 and its database files 0600 whatever the umask.
SQLite gives the ``-wal`` and ``-shm`` files the permissions of the database.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 directories (existing ones are left)."""
    missing = []
    for part in (path, *path.parents):
        if part.exists():
            break
        missing.append(part)
    for part in reversed(missing):
        try:
            part.mkdir(PRIVATE_DIR)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs to set
        os.chmod(part, PRIVATE_DIR)  # the umask may have taken bits mkdir was given
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as a 0600 file if it is missing; make it 0600 if it is wider."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        return keep_private(path)
    os.chmod(path, PRIVATE_FILE)
    return path


def keep_private(path: Path) -> Path:
    """Take group and other permissions away from an existing file (logged when it had some)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning("%s was open to other users (mode %o); it is now %o", path, mode, mode & 0o700)
    return path
