"""Local paths and remote URIs behind one small API (pyarrow filesystems).

A cluster shares one store only if every node can read the same audio and write the same
shards, so nothing in genreflow touches ``open()`` for data directly; it goes through here.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import pyarrow.fs as pafs

CHUNK = 1 << 20


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
        return self.path if self.local else f"{type(self.fs).__name__}:{self.path}"


def locate(uri: str | os.PathLike) -> Location:
    """Resolve a local path or a URI (s3://, gs://, hdfs://, file://, or any fsspec scheme)."""
    text = os.fspath(uri)
    if "://" not in text:
        return Location(pafs.LocalFileSystem(), os.path.abspath(text).replace(os.sep, "/"))
    try:
        fs, path = pafs.FileSystem.from_uri(text)
        return Location(fs, path)
    except (ValueError, OSError):  # pyarrow.ArrowInvalid is a ValueError
        import fsspec  # schemes pyarrow lacks natively (memory://, abfs://, ...)

        fs, path = fsspec.core.url_to_fs(text)
        return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path)


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_dir(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory


def makedirs(loc: Location) -> None:
    loc.fs.create_dir(loc.path, recursive=True)


def list_files(loc: Location, recursive: bool = True) -> list[pafs.FileInfo]:
    """Every entry below ``loc`` (files and folders), without following symlink loops."""
    if loc.local:
        return _walk_local(loc.path, recursive)
    return loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=recursive, allow_not_found=True))


def _walk_local(root: str, recursive: bool) -> list[pafs.FileInfo]:
    """Follows symlinked folders (a genre folder may live elsewhere) but never enters the same
    folder twice, so a symlink loop cannot hang the walk."""
    infos: list[pafs.FileInfo] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda e: None):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        for name in dirnames:
            infos.append(pafs.FileInfo(posixpath.join(dirpath, name), pafs.FileType.Directory))
        for name in filenames:
            full = posixpath.join(dirpath, name)
            kind = pafs.FileType.File if os.path.isfile(full) else pafs.FileType.Unknown
            infos.append(pafs.FileInfo(full, kind))
        if not recursive:
            break
    return infos


def open_input(loc: Location) -> str | BinaryIO:
    """What soundfile can open: the plain path locally, a seekable stream otherwise."""
    return loc.path if loc.local else loc.fs.open_input_file(loc.path)


def read_bytes(loc: Location) -> bytes:
    with loc.fs.open_input_stream(loc.path) as handle:
        return handle.read()


def sha256_and_size(loc: Location) -> tuple[str, int]:
    """Hash a file in chunks so a one-hour file never sits whole in memory."""
    digest, size = hashlib.sha256(), 0
    with loc.fs.open_input_stream(loc.path) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def iter_chunks(loc: Location) -> Iterator[bytes]:
    with loc.fs.open_input_stream(loc.path) as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def atomic_write_bytes(loc: Location, data: bytes) -> None:
    """Make ``data`` appear at ``loc`` whole or not at all.

    Locally: write a hidden temp file beside the target, fsync, then rename over it (readers
    skip names starting with '.'). On object stores a single PUT is already atomic.
    """
    makedirs(loc.parent)
    if not loc.local:
        with loc.fs.open_output_stream(loc.path) as handle:
            handle.write(data)
        return
    tmp = posixpath.join(posixpath.dirname(loc.path), f".tmp-{uuid.uuid4().hex}-{loc.name}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, loc.path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(loc: Location, text: str) -> None:
    atomic_write_bytes(loc, text.encode("utf-8"))


def read_text(loc: Location) -> str:
    return read_bytes(loc).decode("utf-8")
