"""Red-team round 3, the store: H2 (``_params.json`` as a path), M8 (damaged ``_params.json``),
M6 (values and shapes not checked), M7 (unclamped ``valid_frames``), M9 (read-only store with a
damaged shard). Real shards of real audio frames are written into tmp dirs and then damaged the way
the red-team's D02/D11/D12/D13/D14 scripts do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from genreflow.data.synth import noise
from genreflow.features.mfcc import MfccExtractor
from genreflow.features import registered
from genreflow.store.featureset import (FeatureSet, ParamsWarning, list_feature_sets, open_feature_set, read_table,
                                        shard_table, stored_keys, write_shard)
from genreflow.store.integrity import QuarantineWarning
from genreflow.store.verify import verify_store

PARAMS = {"sample_rate": 22050, "duration_s": 3.0, "n_mfcc": 4}


def _fset(data_dir: Path) -> FeatureSet:
    return FeatureSet.create(str(data_dir), MfccExtractor.kind, 1, PARAMS)


def _arrays(n: int, seed: int = 0) -> list[np.ndarray]:
    return [noise(4 * 50 / 22050, 22050, seed=seed * 100 + i)[:200].reshape(4, 50) for i in range(n)]


def _keys(n: int, tag: str) -> list[str]:
    return [f"{tag}{i:02d}".ljust(64, "b") for i in range(n)]


def _good_store(data_dir: Path) -> tuple[FeatureSet, list[str]]:
    fset = _fset(data_dir)
    fset.ensure_params_file()
    write_shard(fset, shard_table(fset.kind, _keys(4, "a0"), _arrays(4), [50] * 4))
    write_shard(fset, shard_table(fset.kind, _keys(4, "a1"), _arrays(4, 1), [50] * 4))
    return fset, fset.shard_paths()


def _kinds() -> dict:
    return {name: cls.kind for name, cls in registered().items()}


# --- H2: the folder name is the truth, a fingerprint never a path ---------------------------------
def test_params_json_fingerprint_path_never_touches_another_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fset, shards = _good_store(data)
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.copy(shards[0], victim / "part-00000-spark.snappy.parquet")
    (victim / "part-00001-x.parquet").write_bytes(b"not parquet at all")
    params_file = Path(fset.location.path) / "_params.json"
    for lie in (str(victim), "../../../../victim"):
        doc = json.loads(params_file.read_text())
        params_file.write_text(json.dumps({**doc, "fingerprint": lie}))
        shards = fset.shard_paths()
        with open(shards[1], "r+b") as fh:  # real damage in the real folder
            fh.truncate(300)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            sets = list_feature_sets(str(data), "mfcc")
            report = verify_store(str(data), _kinds())
        assert [s["fingerprint"] for s in sets] == [fset.fingerprint]
        assert sorted(p.name for p in victim.iterdir()) == ["part-00000-spark.snappy.parquet", "part-00001-x.parquet"]
        assert [c.fingerprint for c in report.feature_sets] == [fset.fingerprint]
        assert not report.ok and "store OK" not in str(report)  # the real folder was verified
        assert json.loads(params_file.read_text())["fingerprint"] == fset.fingerprint  # repaired
        shutil.rmtree(Path(fset.location.path) / "_quarantine")
        _good_store(data)


def test_open_feature_set_refuses_a_fingerprint_that_is_a_path(tmp_path: Path) -> None:
    from genreflow.errors import DataError

    _good_store(tmp_path)
    for bad in ("../../etc", "/etc", "0123456789abcdef/..", "0123456789abcdef\n"):
        with pytest.raises(DataError, match="not a feature-set fingerprint"):
            open_feature_set(str(tmp_path), MfccExtractor.kind, bad)


# --- M8: a damaged _params.json is repaired, never a stop -----------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", '{"fingerprint": 5}', "{not json", "", '"text"',
                                     '{"name": "mfcc", "version": 1, "params": {"n_mfcc": 99}}'])
def test_damaged_params_json_is_rewritten_from_the_folder_and_shards(tmp_path: Path, content: str) -> None:
    fset, _ = _good_store(tmp_path)
    params_file = Path(fset.location.path) / "_params.json"
    good = json.loads(params_file.read_text())
    params_file.write_text(content)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = verify_store(str(tmp_path), _kinds())
    assert report.ok and [c.rows for c in report.feature_sets] == [8]
    assert any("_params.json is damaged" in note and "rewritten" in note for note in report.notes)
    assert not [w for w in seen if issubclass(w.category, ParamsWarning)]  # in the report, not as warnings
    assert json.loads(params_file.read_text()) == good
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list_feature_sets(str(tmp_path), "mfcc")[0]["params"] == PARAMS  # healed: silent from now on


def test_damaged_params_json_without_shards_is_reported_not_fatal(tmp_path: Path) -> None:
    fset = _fset(tmp_path)
    fset.ensure_params_file()
    (Path(fset.location.path) / "_params.json").write_text("[1, 2]")
    with pytest.warns(ParamsWarning, match="no shard records its parameters"):
        sets = list_feature_sets(str(tmp_path), "mfcc")
    assert sets == [{"fingerprint": fset.fingerprint}]
    fset.ensure_params_file()  # what the next `genreflow features` does: it rewrites a damaged file
    assert json.loads((Path(fset.location.path) / "_params.json").read_text())["params"] == PARAMS


# --- M6: values and shapes are checked on every full read and by verify ---------------------------
def _forged_shard(fset: FeatureSet, column: str) -> str:
    arrays = _arrays(3, 5)
    table = shard_table(fset.kind, _keys(3, "zz"), arrays, [50] * 3)
    if column == "nan":
        arrays[1][2, 7] = np.nan
        table = shard_table(fset.kind, _keys(3, "zz"), arrays, [50] * 3)
    elif column == "inf":
        arrays[0][0, 0] = np.inf
        table = shard_table(fset.kind, _keys(3, "zz"), arrays, [50] * 3)
    else:
        lie = {"n_frames": ("n_frames", [51, 50, 50]), "n_mfcc": ("n_mfcc", [4, 3, 4]),
               "valid_high": ("valid_frames", [2**31 - 1, 50, 50]), "valid_zero": ("valid_frames", [0, 50, 50]),
               "valid_negative": ("valid_frames", [-5, 50, 50])}[column]
        table = table.set_column(table.schema.get_field_index(lie[0]), lie[0], pa.array(lie[1], pa.int32()))
    return str(Path(fset.location.path) / write_shard(fset, table))


@pytest.mark.parametrize("column", ["nan", "inf", "n_frames", "n_mfcc", "valid_high", "valid_zero", "valid_negative"])
def test_verify_quarantines_a_shard_whose_values_lie(tmp_path: Path, column: str) -> None:
    fset, _ = _good_store(tmp_path)
    bad = _forged_shard(fset, column)
    report = verify_store(str(tmp_path), _kinds())
    assert [Path(i.shard).name for i in report.quarantined] == [Path(bad).name]
    assert not report.ok and report.feature_sets[0].rows == 8
    assert (Path(fset.location.path) / "_quarantine" / Path(bad).name).exists()


def test_a_full_read_never_returns_forged_values(tmp_path: Path) -> None:
    fset, _ = _good_store(tmp_path)
    _forged_shard(fset, "nan")
    with pytest.warns(QuarantineWarning, match="NaN or infinite"):
        table = read_table(fset)
    assert table.num_rows == 8


def test_segment_pooling_clamps_valid_frames(tmp_path: Path) -> None:
    """M7: valid_frames 2**31-1 must not size the windows (it OOM-killed train at 24 GB)."""
    from genreflow.model.pooling import clip_rows, valid_frames_by_key

    fset, _ = _good_store(tmp_path)
    assert set(valid_frames_by_key(fset).values()) == {50}
    bad = _forged_shard(fset, "valid_high")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rows = clip_rows([(fset, 512 / 22050)], None, 0.5)
    assert not Path(bad).exists() and len(rows) == 8  # quarantined, never pooled
    assert all(r.shape[0] <= 5 for r in rows.values())  # 50 frames of 23 ms in 0.5 s windows


# --- M9: a read-only store with a damaged shard ----------------------------------------------------
def _damage(path: str) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(300)


def test_quarantine_that_cannot_move_warns_and_reads_around(tmp_path: Path) -> None:
    """The quarantine folder cannot be made (here: a file stands in its place, as EROFS would)."""
    fset, shards = _good_store(tmp_path)
    _damage(shards[0])
    (Path(fset.location.path) / "_quarantine").write_text("in the way")
    with pytest.warns(QuarantineWarning, match="cannot move it to _quarantine/"):
        keys = stored_keys(fset)
    assert len(keys) == 4 and Path(shards[0]).exists()
    report = verify_store(str(tmp_path), _kinds())
    assert not report.ok and report.quarantined[0].moved_to == ""
    assert "left in place" in str(report) and "damaged shard(s) found" in str(report)


@pytest.fixture
def readonly_mount(tmp_path: Path):
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to make a read-only bind mount")
    try:
        subprocess.run(["mount", "--bind", str(src), str(mnt)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError):
        pytest.skip("bind mounts are not allowed here")
    mounted = True
    yield src, mnt, lambda: subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True,
                                           capture_output=True)
    if mounted:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


def test_readonly_store_with_a_damaged_shard_still_reads(readonly_mount) -> None:
    """D14: verify, status's reads and training reads go on, naming the shard; never exit 4."""
    src, mnt, make_readonly = readonly_mount
    fset, shards = _good_store(src)
    _damage(shards[1])
    make_readonly()
    ro = FeatureSet(fset.kind, fset.fingerprint, fset.params, _fset(mnt).location)
    name = Path(shards[1]).name
    with pytest.warns(QuarantineWarning, match=f"{name}.*cannot move it to _quarantine/"):
        table = read_table(ro)
    assert table.num_rows == 4
    report = verify_store(str(mnt), _kinds())
    assert not report.ok and [Path(i.shard).name for i in report.quarantined] == [name]
    assert "read-only" in str(report)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "genreflow", "verify", "--data-dir", str(mnt)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 1, run.stderr  # damage found: 1, never 4
    assert name in run.stdout and "Traceback" not in run.stderr

