"""Read each audio file once: the bytes the decoder sees are the bytes that were hashed.

A file rewritten between "hash it" and "decode it" used to get the new audio stored under the
old content key. Here a ``HashingReader`` sits under the decoder: every byte it hands out has
passed through the sha256 first, in file order, and after decoding the rest of the file is
drained through the same hasher. The digest is checked *after* decoding, so what is stored is
always what was hashed, for files of any size and on object stores alike.

It is genreflow's one hashing reader: ``index`` hashes with it (keeping a file's head and tail
for its probes), extraction decodes through it, and ``predict`` with a store hashes a file
through it first and decodes the bytes it kept, so every file is read once.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from genreflow.data.audio import HEAD_BYTES, TAIL_BYTES, decode_mono, head_and_tail, prepare, truncation
from genreflow.errors import AudioDecodeError
from genreflow.core.fs import Location, not_regular_reason

CHUNK = 1 << 20
HEAD_KEEP = 64 << 20  # the start of a file stays readable (decoders return to their header)
WINDOW = 8 << 20  # and so does the most recent part hashed (sequential reads, tail lookups)


class HashingReader(io.RawIOBase):
    """A seekable, read-only view of a sequential stream that hashes every byte once, in order.

    Reads ahead of what was hashed pull the gap through the hasher; reads behind it are served
    from the kept head (first HEAD_KEEP bytes) or the recent window. A decoder that jumps back
    further than that gets an AudioDecodeError rather than unverified bytes.
    """

    def __init__(self, stream, size: int, *, head_keep: int = HEAD_KEEP, window: int = WINDOW) -> None:
        super().__init__()
        self._src, self._size = stream, size
        self._head_keep, self._window_keep = head_keep, window
        self._digest = hashlib.sha256()
        self._hashed = 0
        self._head = bytearray()
        self._window, self._window_start = bytearray(), 0
        self._pos = 0
        self._eof = False
        self.missed = False  # a read asked for bytes no longer kept

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _advance(self, target: int) -> None:
        """Hash the stream up to ``target`` (or its end), keeping head and window."""
        while self._hashed < target and not self._eof:
            chunk = self._src.read(CHUNK)
            if not chunk:
                self._eof = True
                break
            self._digest.update(chunk)
            if self._hashed < self._head_keep:
                self._head += chunk[:self._head_keep - self._hashed]
            self._window += chunk
            self._hashed += len(chunk)
            excess = len(self._window) - self._window_keep
            if excess > 0:
                del self._window[:excess]
                self._window_start += excess

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if self._pos >= end:
            return b""
        self._advance(end)
        end = min(end, self._hashed)
        out = bytearray()
        if self._pos < len(self._head):
            out += self._head[self._pos:min(end, len(self._head))]
        start = self._pos + len(out)
        if start < end:
            if start < self._window_start:
                self.missed = True  # libsndfile may swallow the error raised in its read callback
                raise AudioDecodeError("the decoder went back further than genreflow keeps while hashing "
                                       "(an unusual file layout): re-encode the file")
            out += self._window[start - self._window_start:end - self._window_start]
        self._pos += len(out)
        return bytes(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    @property
    def head(self) -> bytes:
        """The first bytes kept (up to ``head_keep``)."""
        return bytes(self._head)

    @property
    def tail(self) -> bytes:
        """The last bytes hashed (up to ``window``): the file's end once finished."""
        return bytes(self._window)

    def finish(self) -> tuple[str, int]:
        """Drain the rest of the file through the hasher; (sha256 hex, bytes hashed)."""
        while not self._eof:
            self._advance(self._hashed + 64 * CHUNK)
        return self._digest.hexdigest(), self._hashed


@dataclass(frozen=True)
class Decoded:
    """One file decoded once at its own rate (mono), with the sha256 of exactly those bytes."""

    samples: np.ndarray
    sample_rate: int
    content_hash: str
    stored: bool = False  # its hash was among the ``known`` ones: not decoded (samples empty)

    def at(self, sample_rate: int, duration_s: float):
        """This signal as an extractor needs it: a Waveform at ``sample_rate``, fixed length."""
        return prepare(self.samples, self.sample_rate, sample_rate=sample_rate, duration_s=duration_s)


def read_and_decode(loc: Location, *, duration_s: float, expected_hash: str | None = None,
                    need_hash: bool = True, known: Container[str] | None = None) -> Decoded:
    """Hash and decode a file in one read; raise AudioDecodeError if its content is not
    ``expected_hash`` (it changed since it was indexed) or it cannot be used.

    ``need_hash=False`` (prediction of files nobody stored): a local file is decoded straight
    from its path, which spares the hash and libsndfile's reads through Python; content_hash is "".
    ``known`` (prediction with a store): the whole file is hashed first; a hash in ``known`` is
    returned undecoded (``stored=True``), any other file is decoded from the bytes just hashed.
    """
    from pyarrow.fs import FileType

    try:
        if loc.local:  # os.stat, not pyarrow: a name that is not valid UTF-8 must work too
            reason = not_regular_reason(loc)
            if reason:
                raise AudioDecodeError(reason)
            if os.path.isdir(loc.path):
                raise AudioDecodeError("is a folder, not an audio file")
            size = os.stat(loc.path).st_size
            if size == 0:
                raise AudioDecodeError("empty file (0 bytes)")
        else:
            info = loc.fs.get_file_info(loc.path)
            if info.type == FileType.NotFound:
                raise FileNotFoundError(loc.path)
            if info.type == FileType.Directory:
                raise AudioDecodeError("is a folder, not an audio file")
            if info.type != FileType.File:
                raise AudioDecodeError("not a regular file: skipped unopened")
            size = int(info.size or 0)
        if expected_hash is None and not need_hash and known is None and loc.local:
            _check_whole(*head_and_tail(loc.path))
            with open(loc.path, "rb") as handle:  # Python's open takes any bytes of a name (surrogates)
                samples, sample_rate = decode_mono(handle, duration_s=duration_s)
            return Decoded(samples, sample_rate, "")
        if known is not None:
            return _hash_then_decode(loc, size, duration_s, known)
        with (open(loc.path, "rb") if loc.local else loc.fs.open_input_stream(loc.path)) as stream:
            reader = HashingReader(stream, size)
            try:
                samples, sample_rate = decode_mono(reader, duration_s=duration_s)
            except AudioDecodeError:
                if expected_hash is not None and reader.finish()[0] != expected_hash:
                    raise AudioDecodeError("changed since `genreflow index` (content hash differs): re-run it") \
                        from None
                raise
            digest, _ = reader.finish()
            _check_whole(reader.head, reader.tail, size)
    except FileNotFoundError:
        raise AudioDecodeError("deleted since `genreflow index`: re-run it" if expected_hash else "no such file") from None
    except IsADirectoryError:
        raise AudioDecodeError("is a folder, not an audio file") from None
    except OSError as exc:
        raise AudioDecodeError(f"unreadable: {exc.strerror or exc}") from None
    if expected_hash is not None and digest != expected_hash:
        raise AudioDecodeError("changed since `genreflow index` (content hash differs): re-run it")
    return Decoded(samples, sample_rate, digest)


def _check_whole(head: bytes, tail: bytes, size: int) -> None:
    """The truncation checks ``index`` makes: a cut file is refused here too (a decoder would
    return the frames it has, and predict would label a fraction of the song)."""
    reason = truncation(head[:HEAD_BYTES], tail[-TAIL_BYTES:], size)
    if reason:
        raise AudioDecodeError(reason)


def _hash_then_decode(loc: Location, size: int, duration_s: float, known: Container[str]) -> Decoded:
    """Prediction's one read: hash the whole file (its head kept), then, unless the store already
    holds it, decode from the kept bytes. Only a decoder that needs bytes beyond the first
    HEAD_KEEP (a file over 64 MiB with an unusual layout) costs a second read, checked against
    the first digest."""
    with (open(loc.path, "rb") if loc.local else loc.fs.open_input_stream(loc.path)) as stream:
        reader = HashingReader(stream, size)
        digest, _ = reader.finish()
        if digest in known:
            return Decoded(np.zeros(0, np.float32), 0, digest, stored=True)
        _check_whole(reader.head, reader.tail, size)
        reader.seek(0)
        try:
            samples, sample_rate = decode_mono(reader, duration_s=duration_s)
            return Decoded(samples, sample_rate, digest)
        except AudioDecodeError:
            if not reader.missed:
                raise
    with (open(loc.path, "rb") if loc.local else loc.fs.open_input_stream(loc.path)) as stream:
        reader = HashingReader(stream, size)
        samples, sample_rate = decode_mono(reader, duration_s=duration_s)
        if reader.finish()[0] != digest:
            raise AudioDecodeError("changed while genreflow read it: run the command again")
    return Decoded(samples, sample_rate, digest)
