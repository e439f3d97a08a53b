"""A warm run reads nothing it read before: the index trusts unchanged files by their stat
(data/statcache.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf

from genreflow.data import index as index_module
from genreflow.data import statcache
from genreflow.data.index import build_index
from pipeline_support import make_tree


def counting_validator(monkeypatch) -> list[str]:
    """Record every file the index opens and hashes (workers=1 validates in this process)."""
    seen: list[str] = []
    real = index_module.validate_file

    def counted(raw, relpath, previous=None):
        seen.append(relpath)
        return real(raw, relpath, previous)

    monkeypatch.setattr(index_module, "validate_file", counted)
    return seen


def rewrite_in_place(path, seed: int) -> None:
    """New audio of the same length and format, then size and mtime put back as they were."""
    st = os.stat(path)
    data, sr = sf.read(path, dtype="float32")
    fresh = np.random.default_rng(seed).uniform(-0.5, 0.5, data.shape).astype(np.float32)
    sf.write(path, fresh, sr, subtype="PCM_16")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def index_doc(data_dir, workers: int = 1, **kwargs) -> dict:
    doc = build_index(str(data_dir), workers=workers, **kwargs)
    index_module.write_index(doc, str(data_dir))
    return doc


def test_unchanged_files_are_not_read_again_and_a_rewrite_in_place_is_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(statcache, "RACY_NS", 0)  # the files were written just now
    paths = make_tree(tmp_path / "data", per_genre=3, seconds=1.0)
    seen = counting_validator(monkeypatch)
    first = index_doc(tmp_path / "data")
    assert len(seen) == len(paths)
    seen.clear()
    assert index_doc(tmp_path / "data") == first and seen == []  # same index, no file opened
    wav = next(p for p in paths if p.suffix == ".wav")
    rel = wav.relative_to(tmp_path / "data" / "raw").as_posix()
    rewrite_in_place(wav, seed=7)  # same size and mtime: only the change time tells
    third = index_doc(tmp_path / "data")
    assert seen == [rel]
    hashes = {f["relpath"]: f["content_hash"] for f in third["files"]}
    assert hashes[rel] != {f["relpath"]: f["content_hash"] for f in first["files"]}[rel]
    seen.clear()
    index_doc(tmp_path / "data", rehash=True)
    assert sorted(seen) == sorted(p.relative_to(tmp_path / "data" / "raw").as_posix() for p in paths)


def test_files_changed_within_the_racy_window_and_a_damaged_cache_are_hashed(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", per_genre=2, seconds=1.0)
    seen = counting_validator(monkeypatch)
    index_doc(tmp_path / "data")
    seen.clear()
    index_doc(tmp_path / "data")  # written a moment ago: a stat cannot vouch for them yet
    assert len(seen) == 4
    monkeypatch.setattr(statcache, "RACY_NS", 0)
    index_doc(tmp_path / "data")
    cache = tmp_path / "data" / "processed" / "index_stats.json"
    assert len(json.loads(cache.read_text())["files"]) == 4
    cache.write_text('{"format": 1, "files": ')  # cut short
    seen.clear()
    index_doc(tmp_path / "data")
    assert len(seen) == 4 and len(json.loads(cache.read_text())["files"]) == 4  # healed
