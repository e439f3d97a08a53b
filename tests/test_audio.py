"""genreflow.data.audio: validation by decoding, truncation checks on raw bytes, quiet MP3 decoding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FORMATS, write_clip
from genreflow.data.audio import (
    AudioInfo,
    inspect_audio,
    load_audio,
    mp3_truncation,
    ogg_truncation,
    quiet_native_stderr,
    wav_truncation,
)
from genreflow.errors import AudioDecodeError


def reason_of(path: Path) -> str:
    with pytest.raises(AudioDecodeError) as caught:
        inspect_audio(str(path))
    return str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("sr", "channels"), [(8000, 1), (22050, 2), (44100, 1), (48000, 2)])
def test_inspect_reads_rate_channels_duration_and_format(tmp_path, fmt, sr, channels):
    path = write_clip(tmp_path / f"clip.{fmt}", seconds=0.5, sr=sr, channels=channels, seed=sr + channels)
    info = inspect_audio(str(path))
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels, info.format) == (sr, channels, fmt)
    assert info.duration_s == pytest.approx(0.5, abs=0.06)  # lossy codecs pad to whole frames


def test_inspect_goes_by_content_not_extension(tmp_path):
    path = write_clip(tmp_path / "really_flac.WAV", sr=16000, fmt="flac")
    assert inspect_audio(str(path)).format == "flac"


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out = path.with_name(f"cut_{fraction}_{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_files_are_rejected_in_every_format(tmp_path, fraction):
    reasons = {}
    for fmt in FORMATS:
        whole = write_clip(tmp_path / f"whole.{fmt}", seconds=2.0, sr=44100, channels=2, seed=3)
        inspect_audio(str(whole))  # the uncut file is fine
        reasons[fmt] = reason_of(cut(whole, fraction))
    assert reasons["wav"].startswith("truncated: header declares")
    assert reasons["mp3"].startswith("truncated: MP3 header declares")
    assert reasons["ogg"].startswith("truncated: ")
    assert "corrupt or truncated data" in reasons["flac"] or reasons["flac"].startswith("truncated")
    for reason in reasons.values():
        assert str(tmp_path) not in reason


def test_wav_truncation_counts_bytes_from_the_header(tmp_path):
    whole = write_clip(tmp_path / "a.wav", seconds=1.0, sr=8000).read_bytes()  # 16-bit mono: 16000 data bytes
    assert wav_truncation(whole, len(whole)) is None
    assert wav_truncation(whole[:1044], 1044) == "truncated: header declares 16000 data bytes, file holds 1000"
    assert wav_truncation(b"not a riff header", 100) is None


def test_mp3_truncation_reads_xing_header_also_after_an_id3_tag(tmp_path):
    whole = write_clip(tmp_path / "a.mp3", seconds=2.0, sr=22050, channels=2).read_bytes()
    id3 = b"ID3\x03\x00\x00\x00\x00\x00\x14" + b"\x00" * 20  # ID3v2.3 tag with 20 bytes of body
    for data in (whole, id3 + whole):
        assert mp3_truncation(data, len(data)) is None
        half = data[: len(data) // 2]
        reason = mp3_truncation(half, len(half))
        assert reason is not None and reason.startswith("truncated: MP3 header declares")
    assert mp3_truncation(b"hello world" * 100, 1100) is None


def test_ogg_truncation_needs_a_whole_end_of_stream_page(tmp_path):
    whole = write_clip(tmp_path / "a.ogg", seconds=2.0, sr=22050, channels=1, seed=5).read_bytes()
    assert ogg_truncation(whole) is None
    last_page = whole.rfind(b"OggS")
    assert ogg_truncation(whole[:last_page]) == "truncated: the Ogg stream has no end-of-stream page"
    assert ogg_truncation(whole[: last_page + 40]) == "truncated: the last Ogg page is cut off"


def test_empty_header_only_text_and_random_bytes_have_clean_reasons(tmp_path):
    (tmp_path / "empty.flac").write_bytes(b"")
    sf.write(str(tmp_path / "header_only.wav"), np.zeros((0, 1), np.float32), 22050, subtype="PCM_16")
    rng = np.random.default_rng(0)
    for ext in FORMATS:
        (tmp_path / f"text.{ext}").write_text("these are notes, not audio\n" * 20)
        (tmp_path / f"random.{ext}").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert reason_of(tmp_path / "empty.flac") == "empty file (0 bytes)"
    assert reason_of(tmp_path / "header_only.wav") == "no audio frames (header only)"
    for ext in FORMATS:
        assert reason_of(tmp_path / f"text.{ext}") == "not a decodable audio file (format not recognised)"
        assert reason_of(tmp_path / f"random.{ext}").startswith("not a decodable audio file (")
        assert str(tmp_path) not in reason_of(tmp_path / f"random.{ext}")


def test_folder_and_symlink_loop_reasons(tmp_path):
    (tmp_path / "folder.wav").mkdir()
    os.symlink("loop_b.wav", tmp_path / "loop_a.wav")
    os.symlink("loop_a.wav", tmp_path / "loop_b.wav")
    assert reason_of(tmp_path / "folder.wav") == "is a folder, not an audio file"
    assert reason_of(tmp_path / "loop_a.wav").startswith("unreadable: symbolic link loop")


def test_quiet_native_stderr_silences_fd2_and_restores_it(capfd):
    with quiet_native_stderr():
        os.write(2, b"hidden\n")
        with quiet_native_stderr():  # nesting keeps it quiet until the outer block ends
            os.write(2, b"hidden too\n")
        os.write(2, b"still hidden\n")
    os.write(2, b"visible\n")
    with quiet_native_stderr(active=False):
        os.write(2, b"not silenced\n")
    assert capfd.readouterr().err == "visible\nnot silenced\n"


def test_quiet_native_stderr_is_restored_after_threads_overlap(capfd):
    barrier = threading.Barrier(6)

    def decode_like() -> None:
        with quiet_native_stderr():
            barrier.wait()  # all six inside at once
            os.write(2, b"hidden\n")

    threads = [threading.Thread(target=decode_like) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.write(2, b"back\n")
    assert capfd.readouterr().err == "back\n"


def test_python_writes_of_other_threads_reach_stderr_while_fd2_is_silenced():
    """A progress line or warning printed while a decoder or TensorFlow's import has fd 2
    silenced is not lost (a subprocess: sys.stderr must be the real fd 2, not pytest's capture)."""
    script = textwrap.dedent("""
        import os, sys, threading
        from genreflow.core.stderr import quiet_native_stderr
        with quiet_native_stderr():
            os.write(2, b"C library note\\n")
            t = threading.Thread(target=lambda: print("progress line", file=sys.stderr))
            t.start(); t.join()
            with quiet_native_stderr():
                print("nested warning", file=sys.stderr)
        print("after", file=sys.stderr)
        os.write(2, b"fd 2 back\\n")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "progress line\nnested warning\nafter\nfd 2 back\n"


def test_damaged_mp3_decodes_without_libmpg123_chatter(tmp_path, capfd):
    whole = write_clip(tmp_path / "a.mp3", seconds=2.0, sr=44100, seed=7)
    (tmp_path / "text.mp3").write_text("not audio\n" * 30)
    # without the guard libmpg123 does print (so this test can tell the difference)
    try:
        sf.SoundFile(str(tmp_path / "text.mp3")).close()
    except sf.LibsndfileError:
        pass
    assert "MPEG" in capfd.readouterr().err
    assert reason_of(tmp_path / "text.mp3") == "not a decodable audio file (format not recognised)"
    assert inspect_audio(str(whole)).sample_rate == 44100
    assert capfd.readouterr().err == ""


def test_load_audio_downmixes_resamples_and_pads(tmp_path):
    path = write_clip(tmp_path / "stereo.flac", seconds=0.5, sr=44100, channels=2, seed=1)
    wave = load_audio(str(path), sample_rate=22050, duration_s=1.0)
    assert wave.samples.shape == (22050,) and wave.samples.dtype == np.float32
    assert wave.n_valid == pytest.approx(11025, abs=2)
    assert not wave.samples[wave.n_valid:].any()
    assert np.abs(wave.samples[: wave.n_valid]).max() > 0.01
    with pytest.raises(AudioDecodeError, match=r"^not a decodable audio file \(format not recognised\)$"):
        (tmp_path / "bad.mp3").write_text("nope")
        load_audio(str(tmp_path / "bad.mp3"), sample_rate=16000, duration_s=1.0)
