"""genreflow.data.index: discovery, validation reasons, labels, records, index files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import write_clip, write_genre_tree
from genreflow import __version__
from genreflow.data.splits import SplitConfig
from genreflow.data.index import build_index, discover, validate_file, write_index
from genreflow.stages.index import run_index
from genreflow.errors import DataError
from genreflow.core.fs import locate

RECORD_KEYS = {"relpath", "genre", "label", "content_hash", "duration_s", "sample_rate", "channels", "format", "bytes"}


def test_discovery_genres_nesting_hidden_case_and_ignored(data_dir):
    raw = data_dir / "raw"
    write_clip(raw / "rock" / "a.wav")
    write_clip(raw / "rock" / "live" / "1999" / "deep.flac", seed=1)  # nested: still rock
    write_clip(raw / "jazz" / "UPPER.WAV", seed=2)
    write_clip(raw / "jazz" / "Mixed.Mp3", seed=3)
    write_clip(raw / "jazz" / "x.OgG", seed=4)
    write_clip(raw / "jazz" / ".hidden.wav", seed=5)
    write_clip(raw / "jazz" / ".cache" / "in_hidden_folder.wav", seed=6)
    write_clip(raw / ".secret_genre" / "s.wav", seed=7)
    write_clip(raw / "loose.wav", seed=8)  # directly in raw/: no genre
    (raw / "jazz" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (raw / "rock" / "notes.txt").write_text("setlist")
    (raw / "empty_genre").mkdir()

    found = discover(locate(raw))

    assert found.genres == ["empty_genre", "jazz", "rock"]
    assert sorted(found.candidates) == [
        ("jazz/Mixed.Mp3", "jazz"), ("jazz/UPPER.WAV", "jazz"), ("jazz/x.OgG", "jazz"),
        ("rock/a.wav", "rock"), ("rock/live/1999/deep.flac", "rock"),
    ]
    assert sorted(found.ignored) == ["jazz/cover.jpg", "loose.wav", "rock/notes.txt"]


def test_missing_raw_and_raw_without_genre_folders_show_the_layout(data_dir):
    with pytest.raises(DataError, match="No raw audio folder") as caught:
        discover(locate(data_dir / "raw"))
    assert "Expected layout" in str(caught.value) and "<genre>/" in str(caught.value)
    write_clip(data_dir / "raw" / "only_a_file.wav")
    (data_dir / "raw" / ".hidden_folder").mkdir()
    with pytest.raises(DataError, match="No genre folders") as caught:
        discover(locate(data_dir / "raw"))
    assert "Expected layout" in str(caught.value)


def write_bad_files(raw: Path) -> dict[str, str]:
    """One file of every invalid kind under raw/bad/; returns relpath -> expected reason start."""
    bad = raw / "bad"
    bad.mkdir(parents=True)
    (bad / "empty.wav").write_bytes(b"")
    sf.write(str(bad / "header_only.wav"), np.zeros((0, 2), np.float32), 44100, subtype="PCM_16")
    for fmt in ("wav", "flac", "mp3"):
        whole = write_clip(raw / "whole" / f"src.{fmt}", seconds=2.0, sr=44100, channels=2, seed=11).read_bytes()
        (bad / f"truncated.{fmt}").write_bytes(whole[: len(whole) // 2])
    (bad / "notes.mp3").write_text("a text file with an audio extension\n" * 10)
    (bad / "random.flac").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (bad / "album.wav").mkdir()
    os.symlink("loop_b.ogg", bad / "loop_a.ogg")
    os.symlink("loop_a.ogg", bad / "loop_b.ogg")
    os.symlink("missing.wav", bad / "dangling.wav")
    return {
        "bad/empty.wav": "empty file (0 bytes)",
        "bad/header_only.wav": "no audio frames (header only)",
        "bad/truncated.wav": "truncated: header declares",
        "bad/truncated.flac": "corrupt or truncated data: decoding failed after",
        "bad/truncated.mp3": "truncated: MP3 header declares",
        "bad/notes.mp3": "not a decodable audio file (format not recognised)",
        "bad/random.flac": "not a decodable audio file (format not recognised)",
        "bad/album.wav": "is a folder, not an audio file",
        "bad/loop_a.ogg": "unreadable: symbolic link loop (too many levels of symbolic links)",
        "bad/loop_b.ogg": "unreadable: symbolic link loop (too many levels of symbolic links)",
        "bad/dangling.wav": "broken symbolic link",
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_every_invalid_kind_is_recorded_with_a_reason_and_the_run_goes_on(data_dir, workers):
    raw = data_dir / "raw"
    expected = write_bad_files(raw)
    write_genre_tree(data_dir, {"good": 4})

    index = build_index(str(data_dir), workers=workers)

    reasons = {item["relpath"]: item["reason"] for item in index["invalid"]}
    assert set(reasons) == set(expected)
    for relpath, start in expected.items():
        assert reasons[relpath].startswith(start), (relpath, reasons[relpath])
        assert str(data_dir) not in reasons[relpath] and "Error opening" not in reasons[relpath]
    assert [item["relpath"] for item in index["invalid"]] == sorted(reasons)  # stable order
    assert {f["relpath"] for f in index["files"]} == {f"good/clip_{i:03d}.{e}" for i, e in
                                                       enumerate(("wav", "flac", "ogg", "mp3"))} | {
        "whole/src.wav", "whole/src.flac", "whole/src.mp3"}
    assert index["genres"] == {"good": 0, "whole": 1}  # "bad" has no valid file: no label


def test_unreadable_permissions_give_a_reason(tmp_path):
    if os.geteuid() != 0:
        raw = tmp_path / "raw"
        write_clip(raw / "g" / "locked.wav")
        os.chmod(raw / "g" / "locked.wav", 0)
        try:
            record = validate_file(locate(raw), "g/locked.wav")
        finally:
            os.chmod(raw / "g" / "locked.wav", 0o644)
        assert record == {"relpath": "g/locked.wav", "reason": "unreadable: permission denied (check the file's "
                                                                "permissions)"}
        return
    # root reads any file, so check as the unprivileged user "nobody" in a forked child
    records = _validate_as_nobody()
    assert records["g/open.wav"]["sample_rate"] == 22050  # the child can reach the folder...
    assert records["g/locked.wav"] == {"relpath": "g/locked.wav",  # ...but not the locked file
                                       "reason": "unreadable: permission denied (check the file's permissions)"}


def _validate_as_nobody() -> dict:
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        raw = Path(top) / "raw"
        write_clip(raw / "g" / "open.wav")
        write_clip(raw / "g" / "locked.wav", seed=1)
        os.chmod(raw, 0o755)
        os.chmod(raw / "g", 0o755)
        os.chmod(raw / "g" / "locked.wav", 0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, validate, report through the pipe
            status = 0
            signal.alarm(30)  # never hang the test run
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                out = {rel: validate_file(locate(raw), rel) for rel in ("g/open.wav", "g/locked.wav")}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out, status = {"error": repr(exc)}, 1
            os.write(write_end, json.dumps(out).encode())
            os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            out = json.loads(pipe.read() or b'{"died": true}')
        os.waitpid(pid, 0)
    assert "died" not in out, "the unprivileged child died without reporting"
    if "error" in out:
        pytest.skip(f"running as root and cannot drop to user nobody to test permissions: {out['error']}")
    return out


def test_records_hold_every_field_with_real_values(data_dir):
    paths = write_genre_tree(data_dir, {"metal": 4, "blues": 4})
    index = build_index(str(data_dir), workers=2)

    assert len(index["files"]) == 8
    by_rel = {f["relpath"]: f for f in index["files"]}
    for path in paths:
        relpath = path.relative_to(data_dir / "raw").as_posix()
        record = by_rel[relpath]
        info = sf.info(str(path))
        assert set(record) == RECORD_KEYS
        assert record["genre"] == relpath.split("/")[0]
        assert record["label"] == index["genres"][record["genre"]]
        assert record["content_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["bytes"] == path.stat().st_size
        assert record["sample_rate"] == info.samplerate and record["channels"] == info.channels
        assert record["format"] == path.suffix[1:]
        assert record["duration_s"] == pytest.approx(0.3, abs=0.06)
    assert {r["channels"] for r in index["files"]} == {1, 2}
    assert len({r["sample_rate"] for r in index["files"]}) >= 3


def test_labels_are_sorted_names_and_the_same_for_the_same_tree(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    write_genre_tree(first, {"zydeco": 2, "ambient": 1, "Metal": 2})
    (first / "raw" / "no_valid_files").mkdir()
    (first / "raw" / "no_valid_files" / "x.wav").write_text("not audio")
    for top in sorted((first / "raw").iterdir(), reverse=True):  # same bytes, created in another order
        shutil.copytree(top, second / "raw" / top.name)
    one, two = build_index(str(first), workers=1), build_index(str(second), workers=1)
    assert one["genres"] == two["genres"] == {"Metal": 0, "ambient": 1, "zydeco": 2}
    assert one["files"] == two["files"]
    assert one["params"]["genre_folders"] == ["Metal", "ambient", "no_valid_files", "zydeco"]


def test_index_json_and_parquet_hold_the_same_rows(data_dir):
    write_genre_tree(data_dir, {"a": 3, "b": 3})
    (data_dir / "raw" / "a" / "broken.wav").write_bytes(b"RIFF")
    (data_dir / "raw" / "a" / "readme.md").write_text("hi")
    result = run_index(str(data_dir), workers=1, split_config=SplitConfig())
    processed = data_dir / "processed"

    doc = json.loads((processed / "dataset_index.json").read_text())
    assert {"genres", "files", "invalid", "params", "genreflow_version"} <= set(doc)
    assert doc["genreflow_version"] == __version__
    assert len(doc["invalid"]) == 1 and doc["invalid"][0]["relpath"] == "a/broken.wav"
    assert doc["invalid"][0]["reason"].startswith(("not a decodable audio file", "truncated", "no audio"))
    assert doc["ignored"] == ["a/readme.md"]
    assert doc == result["index"]
    frame = pd.read_parquet(processed / "index.parquet")
    assert list(frame.columns) == ["relpath", "genre", "label", "content_hash", "duration_s", "sample_rate",
                                   "channels", "format", "bytes"]
    assert frame.to_dict("records") == doc["files"]
    assert not [p.name for p in processed.iterdir() if p.name.startswith(".")]  # no temp files left


def test_write_index_replaces_files_whole(data_dir, monkeypatch):
    """A write that dies half-way leaves the previous index intact and no temp file behind."""
    from genreflow.core import fs

    write_genre_tree(data_dir, {"a": 2})
    index = build_index(str(data_dir), workers=1)
    write_index(index, str(data_dir))
    before = (data_dir / "processed" / "dataset_index.json").read_bytes()
    real_replace = fs.os.replace

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        write_index({**index, "files": index["files"][:1]}, str(data_dir))
    monkeypatch.setattr(fs.os, "replace", real_replace)
    assert (data_dir / "processed" / "dataset_index.json").read_bytes() == before
    assert not [p.name for p in (data_dir / "processed").iterdir() if p.name.startswith(".")]


def test_a_cold_index_and_extraction_decode_each_file_once(data_dir, monkeypatch):
    """Index validation probes (headers, raw-byte truncation checks, the first blocks); the one
    full decode per file is extraction's (counted through the decoder's own entry points)."""
    from pipeline_support import config_for, extract_in_process

    from genreflow.data import audio, decode

    paths = write_genre_tree(data_dir, {"a": 3, "b": 3}, seconds=8.0)  # longer than the probe at 8 kHz
    full, probes = [], []
    real_all, real_mono = audio._decode_all, decode.decode_mono

    def counting_all(handle, probe_frames=None):
        (probes if probe_frames is not None else full).append(handle.frames)
        return real_all(handle, probe_frames)

    def counting_mono(source, **kwargs):
        full.append(source)
        return real_mono(source, **kwargs)

    monkeypatch.setattr(audio, "_decode_all", counting_all)
    monkeypatch.setattr(decode, "decode_mono", counting_mono)
    config = config_for(data_dir, 8.0)
    index = build_index(str(data_dir), workers=1)
    assert len(index["files"]) == len(paths) and len(probes) == len(paths) and not full
    write_index(index, str(data_dir))
    from genreflow.data.splits import make_splits, splits_json
    (data_dir / "processed" / "splits.json").write_text(splits_json(make_splits(index["files"], config.split)))
    extract_in_process(config, kinds=("mfcc", "spectral"))
    assert len(full) == len(paths)  # one decode per file serves every kind
    assert {f["duration_s"] for f in index["files"]} == {8.0}  # the probe takes the header's length


def test_documentation_beside_the_genre_folders_is_not_reported(data_dir):
    write_genre_tree(data_dir, {"a": 2, "b": 2})
    (data_dir / "raw" / "README.md").write_text("put one folder per genre here\n")
    (data_dir / "raw" / "stray.wav").write_bytes(b"RIFF")  # misplaced audio is still named
    assert build_index(str(data_dir), workers=1)["ignored"] == ["stray.wav"]
