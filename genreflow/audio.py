"""Decoding and preprocessing: any supported file in, fixed-length mono float32 out.

Pure functions (no Ray). Decoding reads only the frames the target duration needs, so a
one-hour file costs what a 30 s clip costs.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .errors import AudioDecodeError

EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg")
BLOCK_FRAMES = 1 << 16


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


def _open(source: str | BinaryIO):
    import soundfile as sf

    try:
        return sf.SoundFile(source)
    except PermissionError:
        raise AudioDecodeError("unreadable: permission denied (check the file's permissions)") from None
    except IsADirectoryError:
        raise AudioDecodeError("is a folder, not an audio file") from None
    except OSError as exc:  # symlink loops, vanished files
        raise AudioDecodeError(f"unreadable: {exc.strerror or exc}") from None
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"not a decodable audio file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


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


def inspect_audio(source: str | BinaryIO, header: bytes = b"", file_size: int = 0) -> AudioInfo:
    """Validate a file by decoding all of it in blocks; raise AudioDecodeError with a reason.

    Catches what opening alone misses: no frames, truncated or corrupt data, NaN samples.
    """
    if file_size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    reason = wav_truncation(header, file_size)
    if reason:
        raise AudioDecodeError(reason)
    with _open(source) as handle:
        declared = handle.frames
        if declared <= 0 or handle.samplerate <= 0:
            raise AudioDecodeError("no audio frames (header only)")
        decoded = 0
        try:
            for block in handle.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioDecodeError("corrupt data: NaN or infinite samples")
                decoded += len(block)
        except AudioDecodeError:
            raise
        except Exception as exc:  # libsndfile reports corrupt streams as RuntimeError/LibsndfileError
            raise AudioDecodeError(f"corrupt data after {decoded} frames ({_first_line(exc)})") from None
        if decoded == 0:
            raise AudioDecodeError("no audio frames could be decoded")
        if decoded < 0.99 * declared:
            raise AudioDecodeError(f"truncated: header declares {declared} frames, only {decoded} decodable")
        return AudioInfo(handle.samplerate, handle.channels, decoded, handle.format.lower())


def load_audio(source: str | BinaryIO, *, sample_rate: int, duration_s: float) -> Waveform:
    """Decode, downmix to mono, resample (soxr HQ) and trim or zero-pad to ``duration_s``.

    Returns a Waveform whose samples have shape (round(sample_rate * duration_s),).
    """
    with _open(source) as handle:
        native_sr = handle.samplerate
        # a few extra native frames so the resampler's edge does not fall inside the clip
        wanted = math.ceil(duration_s * native_sr) + 64
        try:
            data = handle.read(frames=wanted, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioDecodeError(f"corrupt data ({_first_line(exc)})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError("no audio frames could be decoded")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError("corrupt data: NaN or infinite samples")
    return fix_duration(resample(mono, native_sr, sample_rate), sample_rate=sample_rate, duration_s=duration_s)


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
