"""Discovery: which genre folders and candidate audio files ``raw/`` holds, walked safely.

Rules for hostile trees (each left-out item is named in a warning or a reason): a genre folder
(first level under raw/) may be a symlink to a folder anywhere, except the filesystem root, a
folder that contains raw/ itself, /proc, /sys, /dev, /run, or another genre folder (or a folder
inside one: its files would be indexed under two genres and all become label conflicts), each
refused with one warning naming the link. Below
a genre folder, a symlinked sub-folder is followed only when its target lies inside raw/ or
inside that genre folder's own target; a folder is never entered twice (loops), and a genre
folder with more than ``MAX_GENRE_ENTRIES`` entries is left out with a warning. Symlinked files
are followed anywhere (each is validated like any other file). Listing stays on the driver.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from genreflow.data.audio import EXTENSIONS
from genreflow.errors import DataError
from genreflow.core.fs import (Entry, Location, UnsupportedURIError, is_dir, is_under, list_files, locate, uri_prefix,
                               walk_local_guarded)

EXPECTED_LAYOUT = """Expected layout:
  {raw}/
    rock/    song1.wav  song2.mp3 ...
    jazz/    take1.flac ...
    <genre>/ <file>.{{wav,mp3,flac,ogg}}  (sub-folders allowed)"""

MAX_GENRE_ENTRIES = 1_000_000  # files + folders below one genre folder; beyond, it is left out
_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/run")


@dataclass
class Discovery:
    """Candidate audio files and the files skipped because of their extension."""

    genres: list[str]
    candidates: list[tuple[str, str]] = field(default_factory=list)  # (relpath, genre)
    ignored: list[str] = field(default_factory=list)
    unusable: list[dict[str, str]] = field(default_factory=list)  # found but unusable before decoding
    notes: list[str] = field(default_factory=list)  # folders left out (symlink rule, size guard)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(name: str) -> str:
    """A non-UTF-8 name as text: undecodable bytes become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _documentation(name: str) -> bool:
    """README / LICENSE / notes files directly in raw/: documentation, not misplaced audio."""
    stem = posixpath.splitext(name)[0].lower()
    return stem in ("readme", "license", "notes") or posixpath.splitext(name)[1].lower() in (".md", ".txt")


def _hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def _genre_link_refusal(target: str, raw_real: str) -> str | None:
    """Why a symlinked genre folder resolving to ``target`` must not be walked, else None."""
    if target == "/":
        return "the filesystem root"
    if is_under(raw_real, target):
        return "a folder that contains raw/ itself"
    if any(is_under(target, folder) for folder in _SYSTEM_FOLDERS):
        return "a system folder"
    return None


def _other_genre(target: str, raw_real: str) -> str | None:
    """The genre folder (first level under raw/, not hidden) that ``target`` lies in, if any."""
    if not is_under(target, raw_real) or target == raw_real:
        return None
    first = target[len(raw_real.rstrip("/")) + 1:].split("/", 1)[0]
    return None if first.startswith(".") else first


def _list_raw(raw: Location, max_entries: int) -> tuple[list[Entry], list[str]]:
    """raw/'s entries under the symlink rule of the module docstring, and notes on what was left
    out. Remote filesystems have no symlinks: they are listed plainly."""
    if not raw.local:
        return list_files(raw, recursive=True), []
    raw_real = os.path.realpath(raw.path)
    entries: list[Entry] = []
    notes: list[str] = []
    for name in sorted(os.listdir(raw.path)):
        top = posixpath.join(raw.path, name)
        if name.startswith("."):
            continue
        if not os.path.isdir(top):
            entries.append(Entry(top, False))
            continue
        target = os.path.realpath(top)
        refusal = _genre_link_refusal(target, raw_real) if os.path.islink(top) else None
        other = _other_genre(target, raw_real) if os.path.islink(top) else None
        if refusal is None and other is not None:
            notes.append(f"genre folder {_printable(top)} is a symbolic link into the genre folder {_printable(other)!r}: "
                         f"not followed (its files would count twice, under two genres); they are indexed under "
                         f"{_printable(other)!r} only.")
            continue
        if refusal:
            notes.append(f"genre folder {_printable(top)} is a symbolic link to {_printable(target)} ({refusal}): "
                         "not followed. Link a folder that holds only this genre's audio.")
            continue
        walk = walk_local_guarded(top, (raw_real, target), max_entries)
        notes.extend(_printable(note) for note in walk.notes)
        if not walk.complete:
            notes.append(f"genre folder {_printable(top)} holds more than {max_entries:,} files and folders: left "
                         "out of the index (is it a link to a system folder?).")
            continue
        entries.append(Entry(top, True))
        entries.extend(walk.entries)
    return entries, notes


def discover(raw: Location, max_entries: int = MAX_GENRE_ENTRIES) -> Discovery:
    """Find genre folders (first level under raw/) and the audio files anywhere below them."""
    if not is_dir(raw):
        raise DataError(f"No raw audio folder at {raw}.\n" + EXPECTED_LAYOUT.format(raw=raw))
    entries, notes = _list_raw(raw, max_entries)
    prefix = raw.path.rstrip("/") + "/"
    genres: set[str] = set()
    found = Discovery(genres=[], notes=notes)
    # sorted by relpath, never by host-specific listing order, so every machine agrees
    for info in sorted(entries, key=lambda i: i.path):
        relpath = info.path[len(prefix):] if info.path.startswith(prefix) else info.path
        if _hidden(relpath):
            continue
        parts = relpath.split("/")
        is_audio_name = posixpath.splitext(relpath)[1].lower() in EXTENSIONS
        if not _utf8(relpath):
            found.unusable.append({"relpath": _printable(relpath),
                                   "reason": "file name is not valid UTF-8: rename it (e.g. with convmv)"})
            continue
        if info.is_dir:
            if len(parts) == 1:
                genres.add(parts[0])
            elif is_audio_name:  # a folder named like a file: reported, its contents still scanned
                found.candidates.append((relpath, parts[0]))
            continue
        if len(parts) == 1:
            if not _documentation(relpath):  # e.g. the project's own raw/README.md: not worth a note each run
                found.ignored.append(relpath)  # a file directly in raw/ has no genre
        elif is_audio_name:
            found.candidates.append((relpath, parts[0]))
        else:
            found.ignored.append(relpath)
    if not genres:
        left_out = "".join(f"\n{note}" for note in notes)
        raise DataError(f"No genre folders in {raw}.{left_out}\n" + EXPECTED_LAYOUT.format(raw=raw))
    found.genres = sorted(genres)
    return found


def _is_audio_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in EXTENSIONS


def list_audio(paths: list[str], max_entries: int = MAX_GENRE_ENTRIES) -> tuple[list[str], list[str]]:
    """Files as given, folders (local or URI prefixes) expanded to the audio below them, sorted
    per folder, under the rules ``index`` uses: hidden names skipped, the extension decides,
    symlinked sub-folders followed only inside the folder given, loops entered once, at most
    ``max_entries`` entries per folder. Returns (files, notes on what was left out)."""
    out: list[str] = []
    notes: list[str] = []
    for path in paths:
        try:
            loc = locate(path)
        except UnsupportedURIError:
            out.append(path)  # reported for this input alone when it is read
            continue
        if "://" in path and is_dir(loc):
            query = path.partition("?")[2]
            suffix = f"?{query}" if query else ""  # endpoint and options stay with every file
            prefix = uri_prefix(path)  # and so do credentials given as user:secret@ (shown redacted)
            out.extend(sorted(f"{prefix}{e.path}{suffix}" for e in list_files(loc)
                              if not e.is_dir and _is_audio_name(e.path)
                              and not posixpath.basename(e.path).startswith(".")))
        elif "://" not in path and os.path.isdir(path):
            top = path.rstrip("/") or "/"
            walk = walk_local_guarded(top, (os.path.realpath(top),), max_entries)
            notes.extend(_printable(n) for n in walk.notes)
            if not walk.complete:
                notes.append(f"{_printable(top)} holds more than {max_entries:,} files and folders: only the first "
                             "ones were listed.")
            out.extend(sorted(e.path for e in walk.entries if not e.is_dir and _is_audio_name(e.path)))
        else:
            out.append(path)
    return out, notes
