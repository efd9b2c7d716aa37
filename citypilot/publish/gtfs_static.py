"""The static GTFS feed the demo wrote (``<data dir>/gtfs/*.txt``) as one zip file.

The zip is built once per set of files (their names, sizes and modification times)
with fixed member dates, so the same feed always gives the same bytes and ETag.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

#: Members get this date so the zip depends on the files' contents alone.
ZIP_DATE = (2025, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ZippedFeed:
    """A GTFS zip and its entity tag."""

    data: bytes
    etag: str


class StaticFeed:
    """Zips the GTFS files of one folder, again only when they change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key: tuple[tuple[str, int, int], ...] | None = None
        self._zipped: ZippedFeed | None = None

    def files(self) -> list[Path]:
        """The feed's ``.txt`` files, by name."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.txt") if p.is_file())

    def zipped(self) -> ZippedFeed | None:
        """The zip of the current files, or None when the folder holds no feed."""
        files = self.files()
        if not any(p.name == "stops.txt" for p in files):
            return None
        key = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if key != self._key or self._zipped is None:
            self._zipped = zip_files(files)
            self._key = key
        return self._zipped


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
