"""Decoding and preprocessing: any supported file in, fixed-length mono float32 out.

Pure functions (no Ray). Validation (``inspect_audio``) decodes a whole file and checks its
bytes for the truncations libsndfile hides; ``load_audio`` reads only the frames the target
duration needs, so a one-hour file costs what a 30 s clip costs.
"""

from __future__ import annotations

import errno
import math
import os
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from genreflow.core.sections import check
from genreflow.core.stderr import quiet_native_stderr
from genreflow.errors import AudioDecodeError

EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg")
BLOCK_FRAMES = 1 << 16
HEAD_BYTES = 1 << 20  # enough to look past an ID3v2 tag holding cover art
TAIL_BYTES = 1 << 17  # more than the largest Ogg page (27 + 255 + 255 * 255 bytes)

_NON_MP3_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM")
# libsndfile's messages, as short phrases that make sense beside a file name
_LIBSNDFILE_PHRASES = {
    "format not recognised": "format not recognised",
    # what libsndfile says when libmpg123 rejects a file it was asked to open as MP3
    "file does not exist or is not a regular file (possibly a pipe?)": "format not recognised",
    "supported file format but file is malformed": "malformed file",
    "flac decoder lost sync": "FLAC decoder lost sync",
    "internal psf_fseek() failed": "data ends before the declared length",
}


MAX_SAMPLE_RATE = 384_000
MAX_CLIP_SAMPLES = 48_000 * 3600  # one hour at 48 kHz (~0.7 GB of float32 per clip in every worker)
FILE_RATES = (1_000, 768_000)  # Hz a file may declare: 1 Hz or 2 GHz headers are damage, not audio


@dataclass(frozen=True)
class AudioConfig:
    """How every file is decoded before feature extraction (the ``[audio]`` section)."""

    sample_rate: int = 22050
    duration_s: float = 30.0

    def __post_init__(self) -> None:
        check(1000 <= self.sample_rate <= MAX_SAMPLE_RATE, "audio.sample_rate", self.sample_rate,
              f"an integer in [1000, {MAX_SAMPLE_RATE}] (Hz), e.g. 22050")
        check(math.isfinite(self.duration_s) and 0 < self.duration_s <= 3600, "audio.duration_s",
              self.duration_s, "in (0, 3600] seconds")
        check(self.sample_rate * self.duration_s <= MAX_CLIP_SAMPLES, "audio.duration_s", self.duration_s,
              f"at most {MAX_CLIP_SAMPLES / self.sample_rate:g} seconds at sample_rate {self.sample_rate} "
              f"({MAX_CLIP_SAMPLES} samples per clip)")


def rate_problem(rate: int) -> str | None:
    """Why a file's declared sample rate cannot be real audio, else None."""
    if not FILE_RATES[0] <= rate <= FILE_RATES[1]:
        return f"implausible sample rate {rate} Hz (expected {FILE_RATES[0]} to {FILE_RATES[1]} Hz)"
    return None


@dataclass(frozen=True)
class AudioInfo:
    """What the index records about a valid file."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Waveform:
    """A preprocessed clip: ``samples`` [shape=(sample_rate*duration_s,)], of which the first
    ``n_valid`` come from the file and the rest is zero padding."""

    samples: np.ndarray
    sample_rate: int
    n_valid: int


def _might_use_mpg123(source: str | BinaryIO, header: bytes) -> bool:
    """libsndfile hands a file to libmpg123 when it looks like MPEG audio or is named .mp3."""
    if isinstance(source, str) and source.lower().endswith(".mp3"):
        return True
    return not header[:4].startswith(_NON_MP3_MAGIC)


def _peek(source: str | BinaryIO, n: int = 4) -> bytes:
    """The first ``n`` bytes, leaving a stream where it was; b"" if they cannot be read."""
    try:
        if isinstance(source, str):
            with open(source, "rb") as handle:
                return handle.read(n)
        position = source.tell()
        data = source.read(n)
        source.seek(position)
        return bytes(data)
    except (OSError, ValueError, AttributeError):
        return b""


# --- opening and short reasons -----------------------------------------------------------------
def _open(source: str | BinaryIO):
    import soundfile as sf

    try:
        return sf.SoundFile(source)
    except PermissionError:
        raise AudioDecodeError("unreadable: permission denied (check the file's permissions)") from None
    except IsADirectoryError:
        raise AudioDecodeError("is a folder, not an audio file") from None
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"not a decodable audio file ({_decoder_phrase(exc)})") from None
    except OSError as exc:  # symlink loops, vanished files
        raise AudioDecodeError(f"unreadable: {os_error_phrase(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _decoder_phrase(exc: BaseException) -> str:
    """libsndfile's complaint without the file path soundfile puts in front of it."""
    text = getattr(exc, "error_string", None) or _first_line(exc)
    if "': " in text:  # "Error opening '/some/path': <message>"
        text = text.rsplit("': ", 1)[1]
    text = text.strip()
    if text.startswith("Error :"):
        text = text[len("Error :"):].strip()
    text = text.rstrip(".").strip()
    phrase = _LIBSNDFILE_PHRASES.get(text.lower())
    if phrase:
        return phrase
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text or type(exc).__name__


def os_error_phrase(exc: OSError) -> str:
    """An OSError as a short phrase without the path, e.g. "too many levels of symbolic links"."""
    code = exc.errno
    if code is None:  # pyarrow puts "[errno N]" in the message instead
        match = re.search(r"\[errno (\d+)\]", str(exc))
        code = int(match.group(1)) if match else None
    if code == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if code is not None:
        return os.strerror(code).lower()
    text = _first_line(exc)
    return text.rsplit(": ", 1)[-1] if ": " in text else text


# --- truncation checks on raw bytes --------------------------------------------------------------
def wav_truncation(header: bytes, file_size: int) -> str | None:
    """Return a reason if a RIFF/WAVE header declares more data than the file holds.

    libsndfile silently shortens such files, so a copy cut off mid-transfer would otherwise
    look like a valid shorter clip.
    """
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(header):
        chunk_id, size = header[offset:offset + 4], struct.unpack("<I", header[offset + 4:offset + 8])[0]
        if chunk_id == b"data":
            available = file_size - (offset + 8)
            if size not in (0, 0xFFFFFFFF) and available < size:
                return f"truncated: header declares {size} data bytes, file holds {max(available, 0)}"
            return None
        offset += 8 + size + (size & 1)
    return None


def _id3v2_size(header: bytes) -> int:
    """Bytes taken by a leading ID3v2 tag (0 if none); its size is stored 7 bits per byte."""
    if len(header) < 10 or header[:3] != b"ID3":
        return 0
    size = 0
    for byte in header[6:10]:
        size = (size << 7) | (byte & 0x7F)
    return 10 + size + (10 if header[5] & 0x10 else 0)


def _mp3_frame_at(header: bytes, start: int, window: int = 4096) -> int | None:
    """Offset of the first plausible MPEG layer III frame header at or after ``start``."""
    for offset in range(start, min(len(header) - 4, start + window)):
        b1, b2 = header[offset + 1], header[offset + 2]
        if (header[offset] == 0xFF and b1 & 0xE0 == 0xE0 and (b1 >> 3) & 3 != 1 and (b1 >> 1) & 3 == 1
                and b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3):
            return offset
    return None


def mp3_truncation(header: bytes, file_size: int) -> str | None:
    """Return a reason if an MP3's Xing/Info or VBRI header declares more bytes than it holds.

    libmpg123 decodes a cut file to the declared length, so it would pass as a whole clip.
    Like libmpg123, differences under 1 % are tolerated (some encoders round). An MP3 with
    neither header (plain CBR) carries no length, so a cut copy is just a shorter file.
    """
    offset = _mp3_frame_at(header, _id3v2_size(header))
    if offset is None:
        return None
    version, mono = (header[offset + 1] >> 3) & 3, header[offset + 3] >> 6 == 3
    side_info = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    tag_at = offset + 4 + side_info
    declared = 0
    if header[tag_at:tag_at + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(header[tag_at + 4:tag_at + 8], "big")
        if flags & 2:
            field_at = tag_at + 8 + (4 if flags & 1 else 0)
            declared = int.from_bytes(header[field_at:field_at + 4], "big")
    elif header[offset + 36:offset + 40] == b"VBRI":
        declared = int.from_bytes(header[offset + 46:offset + 50], "big")
    available = file_size - offset
    if declared and available < 0.99 * declared:
        return f"truncated: MP3 header declares {declared} bytes of audio, file holds {max(available, 0)}"
    return None


def ogg_truncation(tail: bytes) -> str | None:
    """Return a reason if an Ogg file does not end with a whole end-of-stream page.

    Ogg has no length header, so libvorbis decodes a cut file as a shorter, valid-looking
    one; but every finished stream ends with a page flagged end-of-stream (0x04). ``tail`` is
    the last TAIL_BYTES (or all) of the file.
    """
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0 and page[5] < 8:  # version 0, known flags
            n_segments = page[26]
            end = 27 + n_segments + sum(page[27:27 + n_segments])
            if len(page) < 27 + n_segments or len(page) < end:
                return "truncated: the last Ogg page is cut off"
            if not page[5] & 0x04:
                return "truncated: the Ogg stream has no end-of-stream page"
            return None
        at = tail.rfind(b"OggS", 0, at)
    return None


def truncation(header: bytes, tail: bytes, file_size: int) -> str | None:
    """Why a file's raw bytes say it was cut short (WAV, MP3 with a Xing/VBRI header, Ogg), or
    None: a decoder hides this, returning the frames it has. ``header``/``tail`` are its first
    HEAD_BYTES and last TAIL_BYTES."""
    magic = header[:4]
    if magic == b"OggS":
        return ogg_truncation(tail)
    if magic.startswith(_NON_MP3_MAGIC):
        return wav_truncation(header, file_size)
    return mp3_truncation(header, file_size)


def head_and_tail(source: str) -> tuple[bytes, bytes, int]:
    """The first HEAD_BYTES, the last TAIL_BYTES and the size of a local file (two short reads)."""
    with open(source, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - TAIL_BYTES))
        return head, handle.read(), size


def inspect_audio(source: str | BinaryIO, header: bytes | None = None, file_size: int | None = None,
                  tail: bytes | None = None, probe_frames: int | None = None) -> AudioInfo:
    """Validate a file by decoding it in blocks (all of it, or the first ``probe_frames``);
    raise AudioDecodeError with a reason.

    ``header``/``tail`` are the first HEAD_BYTES and last TAIL_BYTES of the file and
    ``file_size`` its length; for a local path they are read here when not given. Catches
    what opening alone misses: no frames, truncated (from the raw bytes: WAV, MP3 with a
    Xing/VBRI header, Ogg) or corrupt data, NaN samples.
    """
    if isinstance(source, str) and (header is None or file_size is None or tail is None):
        try:
            header, tail, file_size = head_and_tail(source)
        except IsADirectoryError:
            raise AudioDecodeError("is a folder, not an audio file") from None
        except PermissionError:
            raise AudioDecodeError("unreadable: permission denied (check the file's permissions)") from None
        except OSError as exc:
            raise AudioDecodeError(f"unreadable: {os_error_phrase(exc)}") from None
    header, tail = header or b"", tail or b""
    if not file_size:
        raise AudioDecodeError("empty file (0 bytes)")
    reason = truncation(header, tail, file_size)
    if reason:
        raise AudioDecodeError(reason)
    with quiet_native_stderr(_might_use_mpg123(source, header)), _open(source) as handle:
        return _decode_all(handle, probe_frames)


def _decode_all(handle, probe_frames: int | None = None) -> AudioInfo:
    """Decode every block of an open SoundFile (or the first ``probe_frames``: a bounded probe,
    when the full decode's verdict comes later, from extraction); the frames actually decoded
    give the duration, or the header's count when the probe stopped early."""
    declared = handle.frames
    if declared <= 0 or handle.samplerate <= 0:
        raise AudioDecodeError("no audio frames (header only)")
    if rate_problem(handle.samplerate):
        raise AudioDecodeError(rate_problem(handle.samplerate))
    decoded = 0
    try:
        for block in handle.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise AudioDecodeError("corrupt data: NaN or infinite samples")
            decoded += len(block)
            if probe_frames is not None and decoded >= probe_frames and decoded < declared:
                return AudioInfo(handle.samplerate, handle.channels, declared, handle.format.lower())
    except AudioDecodeError:
        raise
    except Exception as exc:  # libsndfile reports corrupt streams as RuntimeError/LibsndfileError
        raise AudioDecodeError(f"corrupt or truncated data: decoding failed after {decoded} of {declared} "
                               f"frames ({_decoder_phrase(exc)})") from None
    if decoded == 0:
        raise AudioDecodeError("no audio frames could be decoded")
    if decoded < 0.99 * declared:
        raise AudioDecodeError(f"truncated: header declares {declared} frames, only {decoded} decodable")
    return AudioInfo(handle.samplerate, handle.channels, decoded, handle.format.lower())


def load_audio(source: str | BinaryIO, *, sample_rate: int, duration_s: float) -> Waveform:
    """Decode, downmix to mono, resample (soxr HQ) and trim or zero-pad to ``duration_s``.

    Returns a Waveform whose samples have shape (round(sample_rate * duration_s),).
    """
    mono, native_sr = decode_mono(source, duration_s=duration_s)
    return prepare(mono, native_sr, sample_rate=sample_rate, duration_s=duration_s)


def prepare(mono: np.ndarray, native_sr: int, *, sample_rate: int, duration_s: float) -> Waveform:
    """One decoded signal at an extractor's rate and fixed length: resample, then trim or pad."""
    return fix_duration(resample(mono, native_sr, sample_rate), sample_rate=sample_rate, duration_s=duration_s)


def decode_mono(source: str | BinaryIO, *, duration_s: float) -> tuple[np.ndarray, int]:
    """Decode the first ``duration_s`` seconds (plus a few frames for the resampler's edge) at
    the file's own rate, downmixed to mono: one decode that every extractor's rate derives from.

    Returns (samples [shape=(n,), float32], native sample rate).
    """
    with quiet_native_stderr(_might_use_mpg123(source, _peek(source))), _open(source) as handle:
        native_sr = handle.samplerate
        if rate_problem(native_sr):
            raise AudioDecodeError(rate_problem(native_sr))
        # a few extra native frames so the resampler's edge does not fall inside the clip
        wanted = math.ceil(duration_s * native_sr) + 64
        try:
            data = handle.read(frames=wanted, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioDecodeError(f"corrupt data ({_decoder_phrase(exc)})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError("no audio frames could be decoded")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError("corrupt data: NaN or infinite samples")
    return mono, native_sr


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling (soxr HQ, the librosa default) to float32."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def fix_duration(samples: np.ndarray, *, sample_rate: int, duration_s: float) -> Waveform:
    """Trim or zero-pad to exactly round(sample_rate * duration_s) samples."""
    target = int(round(sample_rate * duration_s))
    n_valid = min(len(samples), target)
    out = np.zeros(target, dtype=np.float32)
    out[:n_valid] = samples[:n_valid]
    return Waveform(out, sample_rate, n_valid)
