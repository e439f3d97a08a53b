"""Local paths and remote URIs behind one small API (pyarrow filesystems).

A cluster shares one store only if every node can read the same audio and write the same
shards, so nothing in genreflow touches ``open()`` for data directly; it goes through here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import posixpath
import stat
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import pyarrow.fs as pafs

from genreflow.errors import ConfigError

CHUNK = 1 << 20
SUPPORTED_SCHEMES = "local paths, file://, s3://, gs://, hdfs:// and installed fsspec schemes (memory://, abfs://...)"


class UnsupportedURIError(ConfigError, ValueError):
    """A URI whose scheme no filesystem here handles (``foo://``, ``S3://``). A ValueError too,
    so a per-file ``except ValueError`` gives that one input an error row."""


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path on it; ``local`` tells whether os-level tricks (rename) apply."""

    fs: Any
    path: str

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> "Location":
        return Location(self.fs, posixpath.join(self.path, *parts))

    @property
    def parent(self) -> "Location":
        return Location(self.fs, posixpath.dirname(self.path.rstrip("/")))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def __str__(self) -> str:
        """A plain path locally, ``scheme://bucket/key`` otherwise (without endpoint or keys)."""
        return self.path if self.local else f"{_scheme(self.fs)}://{self.path}"


def _scheme(fs: Any) -> str:
    name = fs.type_name  # 'local', 's3', 'gcs', 'hdfs' or 'py::fsspec+<protocol>'
    return {"gcs": "gs"}.get(name, name.rpartition("+")[2] if name.startswith("py::") else name)


def _object_store(fs: Any) -> bool:
    """S3 and GCS have no folders and no rename: one PUT makes a whole object appear at once."""
    return fs.type_name in ("s3", "gcs")


def locate(uri: str | os.PathLike) -> Location:
    """Resolve a local path or a URI (s3://, gs://, hdfs://, file://, or any fsspec scheme)."""
    text = os.fspath(uri)
    if "://" not in text:
        return Location(pafs.LocalFileSystem(), os.path.abspath(text).replace(os.sep, "/"))
    if text.startswith("s3://") and "allow_delayed_open=" not in text:
        # small objects (under the multipart size) then go up in one PutObject
        text += ("&" if "?" in text else "?") + "allow_delayed_open=true"
    try:
        fs, path = pafs.FileSystem.from_uri(text)
        return Location(fs, path)
    except (ValueError, OSError):  # pyarrow.ArrowInvalid is a ValueError
        import fsspec  # schemes pyarrow lacks natively (memory://, abfs://, ...)

        try:
            fs, path = fsspec.core.url_to_fs(text)
        except (ValueError, ImportError) as exc:
            raise _unsupported(text, exc) from None
        return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path)


def _unsupported(text: str, exc: BaseException) -> UnsupportedURIError:
    scheme = text.split("://", 1)[0]
    hint = f" (scheme names are lower case: {scheme.lower()}://)" if scheme != scheme.lower() else ""
    if isinstance(exc, ImportError):
        hint = f" ({str(exc).splitlines()[0][:200] if str(exc) else 'a package is missing'})"
    return UnsupportedURIError(f"{redact_uri(text)}: the URI scheme {scheme[:40]!r} is not supported{hint}; "
                               f"use {SUPPORTED_SCHEMES}.")


_SECRET_QUERY_KEYS = ("secret", "password", "token", "key", "credential", "sig", "signature")


def redact_uri(text: str) -> str:
    """A path or URI as it may be shown: the ``user:secret@`` part of a URI and the values of
    query options that look like credentials (``secret_key=``, ``session_token=``...) become
    ``***``. Local paths come back unchanged."""
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    authority, sep, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    rest = authority + sep + tail
    path, qmark, query = rest.partition("?")
    if qmark:
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            secret = eq and any(word in key.lower() for word in _SECRET_QUERY_KEYS)
            parts.append(f"{key}=***" if secret else item)
        rest = path + "?" + "&".join(parts)
    return f"{scheme}://{rest}"


def uri_prefix(uri: str) -> str:
    """``scheme://[userinfo@]`` of a URI: what a listed object's path needs in front of it to be
    opened with the same credentials (``s3://KEY:SECRET@bucket/inbox`` -> ``s3://KEY:SECRET@``)."""
    scheme, rest = uri.split("://", 1)
    authority = rest.partition("/")[0].partition("?")[0]
    return f"{scheme}://" + (authority.rpartition("@")[0] + "@" if "@" in authority else "")


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_dir(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory


def makedirs(loc: Location) -> None:
    loc.fs.create_dir(loc.path, recursive=True)


@dataclass(frozen=True)
class Entry:
    """One listed file or folder. A plain str path, so local names that are not valid UTF-8
    (kept by Python as surrogate escapes) can still be listed and reported."""

    path: str
    is_dir: bool

    @property
    def base_name(self) -> str:
        return posixpath.basename(self.path)


def list_files(loc: Location, recursive: bool = True) -> list[Entry]:
    """Every entry below ``loc`` (files and folders), without following symlink loops."""
    if loc.local:
        return _walk_local(loc.path, recursive)
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=recursive, allow_not_found=True))
    return [Entry(i.path, i.type == pafs.FileType.Directory) for i in infos]


def walk(root: str, followlinks: bool = False) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` (top-down, depth first, unreadable folders skipped, callers may prune
    ``dirnames``) with an explicit stack: on Python 3.10 and 3.11 ``os.walk`` recurses once per
    level, so a tree ~1000 folders deep would end in RecursionError."""
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as listing:
                found = list(listing)
        except OSError:
            continue
        dirnames, filenames = [], []
        for entry in found:
            try:
                is_folder = entry.is_dir()
            except OSError:
                is_folder = False
            (dirnames if is_folder else filenames).append(entry.name)
        yield top, dirnames, filenames
        for name in reversed(dirnames):
            path = os.path.join(top, name)
            if followlinks or not os.path.islink(path):
                stack.append(path)


def _walk_once(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``walk`` following symlinked folders but never entering the same folder twice (by
    device and inode), so a symlink loop cannot hang a walk. Callers may prune ``dirnames``."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in walk(root, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:  # vanished or became a loop since it was listed
            dirnames[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        yield dirpath, dirnames, filenames


def _walk_local(root: str, recursive: bool) -> list[Entry]:
    """Follows symlinked folders anywhere (loops guarded); the store and other non-hostile
    folders are listed this way, raw/ through ``walk_local_guarded``."""
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in _walk_once(root):
        entries.extend(Entry(posixpath.join(dirpath, name), True) for name in dirnames)
        entries.extend(Entry(posixpath.join(dirpath, name), False) for name in filenames)
        if not recursive:
            break
    return entries


@dataclass
class GuardedWalk:
    """What ``walk_local_guarded`` found: entries, notes on what it did not follow, and whether
    it listed everything (False once ``max_entries`` was passed)."""

    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    complete: bool = True


def is_under(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or lies below it (both already resolved)."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")


def walk_local_guarded(top: str, inside: tuple[str, ...], max_entries: int) -> GuardedWalk:
    """Every non-hidden entry below the local folder ``top``, under three guards.

    A symlinked sub-folder is followed only when its resolved target lies under one of the
    resolved folders ``inside`` (else it is left out with a note); a folder already entered is
    never entered again (symlink loops); after ``max_entries`` entries the walk stops with
    ``complete=False`` so a link to a huge tree cannot keep a command busy for hours.
    """
    walk = GuardedWalk()
    for dirpath, dirnames, filenames in _walk_once(top):
        kept = []
        for name in sorted(dirnames):
            path = posixpath.join(dirpath, name)
            if name.startswith("."):
                continue
            if os.path.islink(path) and not any(is_under(os.path.realpath(path), root) for root in inside):
                walk.notes.append(f"{path} links to {os.path.realpath(path)}, outside raw/ and outside its genre "
                                  "folder: not followed (move the audio, or the link's target, inside raw/).")
                continue
            kept.append(name)
        dirnames[:] = kept
        walk.entries.extend(Entry(posixpath.join(dirpath, name), True) for name in kept)
        walk.entries.extend(Entry(posixpath.join(dirpath, name), False) for name in filenames
                            if not name.startswith("."))
        if len(walk.entries) > max_entries:
            walk.complete = False
            break
    return walk


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO/named pipe"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular_reason(loc: "Location | str | os.PathLike") -> str | None:
    """Why a local path must not be opened as a file (FIFO, socket, device), else None.

    Opening a FIFO blocks until a writer appears and a device may never end, so callers stat
    first (following symlinks) and skip such paths with this reason. Folders, missing paths
    and symlink loops return None: opening them fails at once with their own reason. Remote
    filesystems hold only files and folders, so they always return None.
    """
    if isinstance(loc, Location):
        if not loc.local:
            return None
        loc = loc.path
    try:
        mode = os.stat(loc).st_mode
    except (OSError, ValueError):
        return None
    for test, what in _NOT_REGULAR:
        if test(mode):
            return f"not a regular file ({what})"
    return None


def open_input(loc: Location) -> str | BinaryIO:
    """What soundfile can open: the plain path locally, a seekable stream otherwise."""
    return loc.path if loc.local else loc.fs.open_input_file(loc.path)


def read_bytes(loc: Location, limit: int | None = None) -> bytes:
    """The whole file, or with ``limit`` at most ``limit + 1`` bytes (so a caller can tell a file
    over its limit without reading all of it). Refuses a FIFO or device (OSError), which would
    block or never end."""
    reason = not_regular_reason(loc)
    if reason:
        raise OSError(f"{loc}: {reason}")
    with loc.fs.open_input_stream(loc.path) as handle:
        return handle.read() if limit is None else handle.read(limit + 1)


def atomic_write_bytes(loc: Location, data: bytes) -> None:
    """Make ``data`` appear at ``loc`` whole or not at all.

    Locally: write a hidden temp file beside the target, fsync, then rename over it (readers
    skip names starting with '.'). On object stores an object appears whole when its upload
    completes (one PUT below the multipart size, else the multipart completion) and there are
    no folders to create; shard names are derived from their content, so nothing is renamed.
    """
    if not _object_store(loc.fs):
        makedirs(loc.parent)
    if not loc.local:
        with loc.fs.open_output_stream(loc.path) as handle:
            handle.write(data)
        return
    tmp = posixpath.join(posixpath.dirname(loc.path), f"{_temp_prefix()}{uuid.uuid4().hex[:12]}-{loc.name}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, loc.path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not exc.filename:  # a full disk: say which file could not be written
            raise OSError(exc.errno, exc.strerror, loc.path) from None
        raise


def _temp_prefix(pid: int | None = None) -> str:
    """Temp names carry host and pid so a later run can tell a dead writer's leftovers."""
    return f".tmp-{socket.gethostname()}-{os.getpid() if pid is None else pid}-"


def remove_stale_temps(loc: Location) -> int:
    """Delete temp files left in a local folder by writers on this host that no longer run
    (a killed run). Readers never see them anyway; this only reclaims the space."""
    if not loc.local or not os.path.isdir(loc.path):
        return 0
    removed, host_prefix = 0, f".tmp-{socket.gethostname()}-"
    for name in os.listdir(loc.path):
        if not name.startswith(host_prefix):
            continue
        pid_text = name[len(host_prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(posixpath.join(loc.path, name))
                removed += 1
    return removed


def remove_stale_temps_tree(loc: Location) -> int:
    """``remove_stale_temps`` in ``loc`` and every folder below it (processed/, reports/, each
    store/<kind>/<fingerprint>/ and its _quarantine/), without following symlinks."""
    if not loc.local or not os.path.isdir(loc.path):
        return 0
    removed = 0
    for dirpath, _, _ in walk(loc.path):
        removed += remove_stale_temps(Location(loc.fs, dirpath))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(loc: Location, text: str) -> None:
    atomic_write_bytes(loc, text.encode("utf-8"))


def read_text(loc: Location) -> str:
    return read_bytes(loc).decode("utf-8")
