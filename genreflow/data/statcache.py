"""Which raw files are unchanged since the last index, told by their stat, as git and make do.

Re-hashing every file made a warm ``run`` of 1,000 clips spend 2.2 s reading 2 GB it had read
before. A file whose size, modification and change times (ns), inode and device all equal those
recorded when it was last hashed, and whose hash the previous index lists, keeps its record
without being opened. The change time cannot be set back by a user (``touch -d`` sets it to
now), so a rewrite in place is seen even when size and mtime were restored. A file changed in
the same clock tick as, but after, its stat would keep that stat ("racy"), so a file whose times
are within ``RACY_NS`` of the moment the stats were taken is not recorded and is hashed next
time (``COARSE_RACY_NS`` where its times are whole seconds: FAT, some network filesystems).
Remote filesystems report no change time or inode: their files are always hashed.
``genreflow index --rehash`` ignores the cache.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from genreflow import __version__
from genreflow.core.fs import Location, atomic_write_text, exists, read_text
from genreflow.core.layout import Layout

FORMAT = 1
RACY_NS = 100_000_000  # well above a kernel clock tick (1-10 ms), the granularity of file times
COARSE_RACY_NS = 2_000_000_000

Stat = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


@dataclass(frozen=True)
class Snapshot:
    """The stats of the candidates, and the time just before the first was taken."""

    taken_ns: int
    files: dict[str, Stat]

    def settled(self, rel: str) -> bool:
        """Whether a change after the stat must have moved the file's times (not racy)."""
        _, mtime, ctime, _, _ = self.files[rel]
        coarse = mtime % 1_000_000_000 == 0 and ctime % 1_000_000_000 == 0
        return max(mtime, ctime) < self.taken_ns - (COARSE_RACY_NS if coarse else RACY_NS)


def _cache(layout: Layout) -> Location:
    return layout.processed.join("index_stats.json")


def stat_files(raw: Location, relpaths: list[str]) -> Snapshot:
    """The stat of each local file (symlinks followed); none for a remote ``raw``."""
    taken = time.time_ns()
    if not raw.local:
        return Snapshot(taken, {})
    out: dict[str, Stat] = {}
    for rel in relpaths:
        try:
            st = os.stat(raw.join(rel).path)
        except (OSError, ValueError):
            continue
        out[rel] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    return Snapshot(taken, out)


def unchanged(layout: Layout, snapshot: Snapshot, previous: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """relpath -> previous index record, for every file the cache vouches for."""
    if not snapshot.files or not previous:
        return {}
    try:
        doc = json.loads(read_text(_cache(layout))) if exists(_cache(layout)) else {}
    except (OSError, ValueError):
        return {}  # damaged: hash everything, the next write replaces it
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("genreflow_version") != __version__:
        return {}
    entries = doc.get("files") if isinstance(doc.get("files"), dict) else {}
    out = {}
    for rel, stat in snapshot.files.items():
        entry, record = entries.get(rel), previous.get(rel)
        if (record and isinstance(entry, list) and len(entry) == 6 and tuple(entry[:5]) == stat
                and entry[5] == record.get("content_hash") and stat[0] == record.get("bytes")):
            out[rel] = record
    return out


def write(layout: Layout, snapshot: Snapshot, records: list[dict[str, Any]]) -> None:
    """Record the stat taken before each valid file was hashed (a file changed while it was
    read has a newer stat by then, so it is hashed again next time)."""
    if not snapshot.files:
        return
    files = {r["relpath"]: [*snapshot.files[r["relpath"]], r["content_hash"]] for r in records
             if r["relpath"] in snapshot.files and snapshot.settled(r["relpath"])}
    atomic_write_text(_cache(layout), json.dumps({"format": FORMAT, "genreflow_version": __version__,
                                                  "files": files}, separators=(",", ":")) + "\n")
