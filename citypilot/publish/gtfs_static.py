"""The static GTFS feed the demo wrote (``<data dir>/gtfs/*.txt``): as one zip file, and
as the index the real-time feeds join to.

Both are built once per set of files (their names, sizes and modification times); the
zip has fixed member dates, so the same feed always gives the same bytes and ETag.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from citypilot.publish.gtfs_index import StaticIndex, load_index

#: Members get this date so the zip depends on the files' contents alone.
ZIP_DATE = (2025, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ZippedFeed:
    """A GTFS zip and its entity tag."""

    data: bytes
    etag: str


class StaticFeed:
    """Zips and indexes the GTFS files of one folder, again only when they change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key: tuple[tuple[str, int, int], ...] | None = None
        self._zipped: ZippedFeed | None = None
        self._index_key: tuple[tuple[str, int, int], ...] | None = None
        self._index: StaticIndex | None = None

    def files(self) -> list[Path]:
        """The feed's ``.txt`` files, by name."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.txt") if p.is_file())

    def _current(self) -> tuple[list[Path], tuple[tuple[str, int, int], ...]] | None:
        files = self.files()
        if not any(p.name == "stops.txt" for p in files):
            return None
        return files, tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)

    def zipped(self) -> ZippedFeed | None:
        """The zip of the current files, or None when the folder holds no feed."""
        current = self._current()
        if current is None:
            return None
        files, key = current
        if key != self._key or self._zipped is None:
            self._zipped = zip_files(files)
            self._key = key
        return self._zipped

    def index(self) -> StaticIndex | None:
        """The trips, stops and routes of the current files, or None without a feed."""
        current = self._current()
        if current is None:
            return None
        if current[1] != self._index_key or self._index is None:
            self._index = load_index(self.folder)
            self._index_key = current[1]
        return self._index


def zip_files(files: list[Path]) -> ZippedFeed:
    """A deflated zip of ``files`` at the archive's root, with fixed dates."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    return ZippedFeed(data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
