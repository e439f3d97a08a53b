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
Hidden folders (a name starting with ".", ``...`` included) are skipped on purpose, silently
unless one directly in raw/ holds audio; a genre folder named only with whitespace would print
as a blank and is left out. Names in notes are escaped (``display_name``).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from genreflow.core.console import display_name
from genreflow.data.audio import EXTENSIONS
from genreflow.errors import DataError
from genreflow.core.fs import (Entry, Location, UnsupportedURIError, is_dir, is_under, list_files, locate, uri_prefix,
                               walk, walk_local_guarded)

EXPECTED_LAYOUT = """Expected layout:
  {raw}/
    rock/    song1.wav  song2.mp3 ...
    jazz/    take1.flac ...
    <genre>/ <file>.{{wav,mp3,flac,ogg}}  (sub-folders allowed)"""

MAX_GENRE_ENTRIES = 1_000_000  # files + folders below one genre folder; beyond, it is left out
HIDDEN_SCAN_ENTRIES = 10_000  # entries looked at in a hidden folder of raw/ to find audio in it
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


def _audio_in_hidden(top: str, limit: int = HIDDEN_SCAN_ENTRIES) -> str | None:
    """The first audio file below the hidden folder ``top`` (at most ``limit`` entries looked at,
    hidden names skipped, links not followed), else None: a ``...`` or ``.rock`` folder holding
    music is worth one note, a ``.git`` is not."""
    seen = 0
    for dirpath, dirnames, filenames in walk(top):  # no recursion: a 1,000-deep tree is fine
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and _is_audio_name(name):
                return posixpath.join(dirpath, name)
        seen += len(dirnames) + len(filenames)
        if seen > limit:
            return None
    return None


def _hidden_note(folder: str, example: str) -> str:
    return display_name(f"skipped hidden folder {folder}: it holds audio files (e.g. {example}), but folders whose "
                        "names start with '.' are left out on purpose; rename it to use it as a genre.")


def _blank_note(top: str, name: str) -> str:
    return display_name(f"skipped genre folder {name!r} in {posixpath.dirname(top)}: its name is only whitespace "
                        "and would print as a blank; rename it to use it as a genre.")


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
            example = _audio_in_hidden(top) if os.path.isdir(top) else None
            if example is not None:
                notes.append(_hidden_note(top, example))
            continue
        if not os.path.isdir(top):
            entries.append(Entry(top, False))
            continue
        if not name.strip():
            notes.append(_blank_note(top, name))
            continue
        target = os.path.realpath(top)
        refusal = _genre_link_refusal(target, raw_real) if os.path.islink(top) else None
        other = _other_genre(target, raw_real) if os.path.islink(top) else None
        if refusal is None and other is not None:
            notes.append(display_name(f"genre folder {top} is a symbolic link into the genre folder {other!r}: not "
                                      "followed (its files would count twice, under two genres); they are indexed "
                                      f"under {other!r} only."))
            continue
        if refusal:
            notes.append(display_name(f"genre folder {top} is a symbolic link to {target} ({refusal}): not followed. "
                                      "Link a folder that holds only this genre's audio."))
            continue
        walk = walk_local_guarded(top, (raw_real, target), max_entries)
        notes.extend(display_name(note) for note in walk.notes)
        if not walk.complete:
            notes.append(display_name(f"genre folder {top} holds more than {max_entries:,} files and folders: left "
                                      "out of the index (is it a link to a system folder?)."))
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
    left_out: set[str] = set()  # hidden or whitespace-only first-level folders already noted
    found = Discovery(genres=[], notes=notes)
    # sorted by relpath, never by host-specific listing order, so every machine agrees
    for info in sorted(entries, key=lambda i: i.path):
        relpath = info.path[len(prefix):] if info.path.startswith(prefix) else info.path
        parts = relpath.split("/")
        if (len(parts) > 1 or info.is_dir) and (parts[0].startswith(".") or not parts[0].strip()):
            # hidden or blank first-level folders of a remote listing (local ones are left out by _list_raw)
            note = _left_out_genre_note(prefix + parts[0], parts[0], relpath, info.is_dir)
            if note is not None and parts[0] not in left_out:
                left_out.add(parts[0])
                found.notes.append(note)
            continue
        if _hidden(relpath):
            continue
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


def _left_out_genre_note(top: str, name: str, relpath: str, is_dir: bool) -> str | None:
    """The note on a hidden folder of raw/ for its first audio file, or on a whitespace-only genre
    folder; None for anything else in them (a ``.git``'s files, an AppleDouble ``._x.wav``)."""
    if name.strip() and not name.startswith("."):
        return None
    if not name.startswith("."):
        return _blank_note(top, name)
    base = posixpath.basename(relpath)
    if is_dir or base.startswith(".") or not _is_audio_name(base):
        return None
    return _hidden_note(top, top + relpath[len(name):])


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
            notes.extend(display_name(n) for n in walk.notes)
            if not walk.complete:
                notes.append(display_name(f"{top} holds more than {max_entries:,} files and folders: only the first "
                                          "ones were listed."))
            out.extend(sorted(e.path for e in walk.entries if not e.is_dir and _is_audio_name(e.path)))
        else:
            out.append(path)
    return out, notes
