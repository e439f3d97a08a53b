"""A warm run reads nothing it read before: the index trusts unchanged files by their stat
(data/statcache.py) and `run` keeps a model trained on the same inputs (stages/uptodate.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from genreflow.cli import main
from genreflow.data import index as index_module
from genreflow.data import statcache
from genreflow.data.index import build_index
from pipeline_support import make_tree, write_toml


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
    monkeypatch.setattr(statcache, "RACY_NS", 3600 * 10**9)  # as if written within a clock tick of the stat
    index_doc(tmp_path / "data")
    seen.clear()
    index_doc(tmp_path / "data")  # a stat cannot vouch for them: a change in the same tick keeps it
    assert len(seen) == 4
    monkeypatch.setattr(statcache, "RACY_NS", 100_000_000)
    t = 1_700_000_000 * 10**9  # times in whole seconds (FAT, some network filesystems): 2 s of margin
    assert not statcache.Snapshot(t + 1_500_000_000, {"a": (1, t, t, 1, 1)}).settled("a")
    assert statcache.Snapshot(t + 1_500_000_000, {"a": (1, t + 7, t + 7, 1, 1)}).settled("a")
    monkeypatch.setattr(statcache, "RACY_NS", 0)
    index_doc(tmp_path / "data")
    cache = tmp_path / "data" / "processed" / "index_stats.json"
    assert len(json.loads(cache.read_text())["files"]) == 4
    cache.write_text('{"format": 1, "files": ')  # cut short
    seen.clear()
    index_doc(tmp_path / "data")
    assert len(seen) == 4 and len(json.loads(cache.read_text())["files"]) == 4  # healed


def _run(data_dir, toml, *extra) -> str:
    result = CliRunner().invoke(main, ["run", "--data-dir", str(data_dir), "--config", str(toml), "--workers", "1",
                                       "--features", "mfcc", "--executor", "local", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _models(data_dir) -> list[str]:
    return sorted(p.name for p in (data_dir / "processed" / "models").glob("*.zip"))


def test_run_keeps_a_model_trained_on_the_same_inputs_and_retrains_when_one_changes(tmp_path):
    data = tmp_path / "data"
    make_tree(data, per_genre=4, seconds=1.0)
    toml = write_toml(tmp_path / "genreflow.toml", duration_s=1.0)
    first = _run(data, toml)
    assert "model up to date" not in first and len(_models(data)) == 1
    model_bytes = (data / "processed" / "classifier_model.zip").read_bytes()
    metrics = json.loads((data / "processed" / "reports" / "metrics.json").read_text())
    second = _run(data, toml)
    assert "model up to date" in second and f"accuracy: {metrics['accuracy']:.4f}" in second
    assert len(_models(data)) == 1 and (data / "processed" / "classifier_model.zip").read_bytes() == model_bytes
    assert "model up to date" not in _run(data, toml, "--C", "0.5")  # another setting: trained
    assert len(_models(data)) == 2
    assert "model up to date" in _run(data, toml, "--C", "0.5")
    assert "model up to date" not in _run(data, toml, "--C", "0.5", "--retrain") and len(_models(data)) == 3
    make_tree(data, per_genre=5, seconds=1.0)  # one new file per genre: new index, new features
    assert "model up to date" not in _run(data, toml, "--C", "0.5") and len(_models(data)) == 4
    (data / "processed" / "reports" / "metrics.json").unlink()  # its report is gone: trained again
    assert "model up to date" not in _run(data, toml, "--C", "0.5") and len(_models(data)) == 5
