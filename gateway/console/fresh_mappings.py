"""Today's mappings for a reprocess: MAPPINGS_DIR loaded again when its files changed.

The running channels keep the mappings they started with; a reprocess reads the folder as it
is on disk now, compiled and checked as at start-up, so an operator can fix a mapping and run
the refused messages again. The folder's fingerprint (every file's path, size and change
time) decides whether to compile again.
"""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.mapping.engine import Mapping, load_mappings

_Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> _Fingerprint:
    """Every file under ``directory``: relative path, size and change time (ns)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


class MappingsOnDisk:
    """The mappings of one folder, compiled again only when the folder changed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._seen: _Fingerprint | None = None
        self._mappings: dict[str, Mapping] = {}

    def current(self) -> dict[str, Mapping]:
        """The folder's mappings as they are now; MappingError names a broken file."""
        with self._lock:
            now = fingerprint(self.directory)
            if now != self._seen:
                self._mappings = load_mappings(self.directory)  # raises before anything changes
                self._seen = now
            return self._mappings


_FOLDERS: dict[str, MappingsOnDisk] = {}
_FOLDERS_LOCK = threading.Lock()


def mappings_on_disk(directory: str) -> MappingsOnDisk:
    """The one watcher of ``directory`` in this process."""
    with _FOLDERS_LOCK:
        found = _FOLDERS.get(directory)
        if found is None:
            found = _FOLDERS[directory] = MappingsOnDisk(Path(directory))
        return found
