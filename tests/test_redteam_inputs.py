"""Red-team round 3, inputs and sizes: M10/L5 (model files read unbounded, bytes leaked), M11 (deep
folders), M13 (S3 credentials), M14 (unknown URI schemes), M16 (genre link to another genre), M1
(tiny segments), M3 (seed >= 2**32), M4 (classifier sizes), M12 (confusion PNG), M2 (catastrophic
group pattern), M15 (groups CSV mostly unmatched), M5/L14 (impossible sizes and sample rates), L1, L3.
Real files in tmp dirs, real audio from genreflow.data.synth."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genreflow.data.synth import tone, write_audio
from genreflow.errors import AudioDecodeError, ConfigError, DataError, ModelLoadError

MARKER = json.dumps({"format": "genreflow-model", "version": 1}).encode()


# --- M10 / L5: model files ------------------------------------------------------------------------
def _model_zip(path: Path, meta: dict | None = None, genres=("a", "b")) -> Path:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from genreflow.core.fs import locate
    from genreflow.model.modelfile import save_model_file

    X = np.random.default_rng(0).normal(size=(20, 3))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, np.arange(20) % 2)
    recipe = [{"name": "mfcc", "version": 1, "section": {}, "audio": {}, "params": {}, "fingerprint": "0" * 16}]
    meta = {"genres": list(genres), "features": "mfcc", "extractors": recipe, "fingerprints": {"mfcc": "0" * 16},
            **(meta or {})}
    save_model_file(locate(str(path)), pipeline, meta)
    return path


def test_model_file_fifo_and_devices_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.zip"
    os.mkfifo(fifo)
    code = ("import sys\nfrom genreflow.model.modelfile import load_model_file\nfrom genreflow.errors import "
            "ModelLoadError\nfor p in sys.argv[1:]:\n    try: load_model_file(p)\n    except ModelLoadError as e: "
            "print(e)\n")
    run = subprocess.run([sys.executable, "-c", code, str(fifo), "/dev/zero", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)  # before the fix: blocked for ever on the FIFO
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 3, run.stderr
    assert "a FIFO/named pipe, not a model file" in lines[0]
    assert "a character device, not a model file" in lines[1]
    assert "is a folder, not a model file" in lines[2]


def test_model_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    from genreflow.model.modelfile import MAX_MEMBER_BYTES, load_model_file

    good = _model_zip(tmp_path / "good.zip")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("genreflow-model.json", src.read("genreflow-model.json"))
        with out.open("meta.json", "w") as fh:
            for _ in range(MAX_MEMBER_BYTES["meta.json"] // (1 << 20) + 1):
                fh.write(b" " * (1 << 20))
            fh.write(src.read("meta.json"))
        out.writestr("pipeline.skops", src.read("pipeline.skops"))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ModelLoadError, match=r"meta.json would inflate to \d+ bytes.*zip bomb"):
        load_model_file(str(bomb))
    assert load_model_file(str(good))[1]["genres"] == ["a", "b"]


def test_not_a_model_error_never_shows_file_bytes(tmp_path: Path) -> None:
    from genreflow.model.modelfile import load_model_file

    private = tmp_path / "shadow"
    private.write_bytes(b"toor:$6$SECRETHASH:19000:0:99999:7:::\n")
    with pytest.raises(ModelLoadError) as caught:
        load_model_file(str(private))
    assert "toor" not in str(caught.value) and "SECRET" not in str(caught.value) and "b'" not in str(caught.value)


def test_tampered_model_metadata_is_one_model_error(tmp_path: Path) -> None:
    """L3: duplicate genres, an empty or repeated extractor list, a deep meta.json; L4: exit 3 type."""
    from genreflow.model.bundle import load_model_bundle

    cases = {
        "dup.zip": _model_zip(tmp_path / "dup.zip", genres=("a", "a")),
        "empty.zip": _model_zip(tmp_path / "empty.zip", {"extractors": []}),
        "twice.zip": _model_zip(tmp_path / "twice.zip", {"extractors": [
            {"name": "mfcc", "fingerprint": "0" * 16}, {"name": "mfcc", "fingerprint": "0" * 16}]}),
        "segment.zip": _model_zip(tmp_path / "segment.zip", {"segment_s": 1e-7}),
    }
    deep = tmp_path / "deep.zip"
    with zipfile.ZipFile(cases["dup.zip"]) as src, zipfile.ZipFile(deep, "w") as out:
        out.writestr("genreflow-model.json", MARKER)
        out.writestr("meta.json", "[" * 100_000)
        out.writestr("pipeline.skops", src.read("pipeline.skops"))
    cases["deep.zip"] = deep
    for name, path in cases.items():
        with pytest.raises(ModelLoadError) as caught:
            load_model_bundle(str(path))
        assert "\n" not in str(caught.value), name


# --- M11: deep folders ----------------------------------------------------------------------------
def _deep(root: Path, depth: int) -> str:
    """``root/d/d/.../d`` made one level at a time (os.makedirs and pathlib recurse per level)."""
    here = str(root)
    os.makedirs(here, exist_ok=True)
    for _ in range(depth):
        here += "/d"
        os.mkdir(here)
    return here


def _remove_deep(top: str) -> None:
    """Delete a deep tree bottom-up without recursion (shutil.rmtree, and so pytest's clean-up of
    old tmp dirs, would hit RecursionError on it)."""
    from genreflow.core.fs import walk

    folders = [top]
    for dirpath, _, filenames in walk(top):
        folders.append(dirpath)
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
    for folder in sorted(set(folders), key=len, reverse=True):
        os.rmdir(folder)


@pytest.fixture
def deep_tree(tmp_path: Path):
    yield tmp_path / "data" / "raw" / "b"
    _remove_deep(str(tmp_path / "data" / "raw" / "b"))


def test_folders_1100_deep_are_walked_without_recursion_error(tmp_path: Path, deep_tree: Path) -> None:
    from genreflow.core.fs import list_files, locate
    from genreflow.data.discovery import discover, list_audio

    raw = tmp_path / "data" / "raw"
    write_audio(raw / "a" / "top.wav", tone(220, 0.2, 8000), 8000)
    deep = _deep(deep_tree, 1100)
    shallow = write_audio(tmp_path / "deep.wav", tone(330, 0.2, 8000), 8000)
    with open(deep + "/deep.wav", "wb") as fh:  # libsndfile refuses a 2,200-character name
        fh.write(Path(shallow).read_bytes())
    found = discover(locate(str(raw)))
    assert found.genres == ["a", "b"] and sum(1 for rel, _ in found.candidates if rel.endswith("deep.wav")) == 1
    files, _ = list_audio([str(raw / "b")])
    assert [Path(f).name for f in files] == ["deep.wav"]
    assert any(e.path.endswith("deep.wav") for e in list_files(locate(str(raw))))


# --- M14 / M13: URIs ------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", ["foo://x/data", "S3://bucket/data", "Gs://b/x.zip"])
def test_unknown_uri_scheme_is_one_config_line(uri: str) -> None:
    from genreflow.core.fs import locate
    from genreflow.model.modelfile import load_model_file

    with pytest.raises(ConfigError) as caught:
        locate(uri)
    text = str(caught.value)
    assert uri in text and "s3://" in text and "\n" not in text
    with pytest.raises(ModelLoadError, match="not supported"):
        load_model_file(uri)


def test_unknown_scheme_predict_input_is_kept_for_its_own_error_row(tmp_path: Path) -> None:
    from genreflow.data.discovery import list_audio

    good = write_audio(tmp_path / "in" / "x.wav", tone(220, 0.2, 8000), 8000)
    files, _ = list_audio(["foo://x.wav", str(tmp_path / "in")])
    assert files == ["foo://x.wav", str(good)]


def test_redacted_uri_hides_credentials_and_prefix_keeps_them() -> None:
    from genreflow.core.fs import redact_uri, uri_prefix

    uri = "s3://AKIAEXAMPLE:SuperSecret123@bkt/inbox/a.wav?endpoint_override=h:1&secret_key=xyz&scheme=http"
    shown = redact_uri(uri)
    assert "SuperSecret123" not in shown and "AKIAEXAMPLE" not in shown and "xyz" not in shown
    assert shown.startswith("s3://***@bkt/inbox/a.wav?endpoint_override=h:1")
    assert uri_prefix(uri) == "s3://AKIAEXAMPLE:SuperSecret123@" and uri_prefix("s3://bkt/x") == "s3://"
    assert redact_uri("/local/pa:th@x") == "/local/pa:th@x"


def test_s3_prefix_listing_keeps_credentials_on_every_file(tmp_path: Path) -> None:
    moto = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from genreflow.core.fs import locate, read_bytes
    from genreflow.data.discovery import list_audio

    server = moto.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="t", aws_secret_access_key="t")
        s3.create_bucket(Bucket="bkt")
        wav = write_audio(tmp_path / "a.wav", tone(220, 0.2, 8000), 8000)
        s3.upload_file(str(wav), "bkt", "inbox/a.wav")
        query = f"?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        files, _ = list_audio([f"s3://AKIAEXAMPLE:SuperSecret123@bkt/inbox{query}"])
        assert files == [f"s3://AKIAEXAMPLE:SuperSecret123@bkt/inbox/a.wav{query}"]
        assert read_bytes(locate(files[0])) == wav.read_bytes()
    finally:
        server.stop()


# --- M16: a genre folder linked to another genre --------------------------------------------------
def test_genre_link_to_another_genre_is_named_and_skipped(tmp_path: Path) -> None:
    from genreflow.core.fs import locate
    from genreflow.data.discovery import discover

    raw = tmp_path / "raw"
    for genre in ("a", "c"):
        for i in range(2):
            write_audio(raw / genre / f"{genre}{i}.wav", tone(200 + 50 * i, 0.2, 8000), 8000)
    (raw / "c_alias").symlink_to("c")
    (raw / "c_sub").symlink_to(raw / "c")
    found = discover(locate(str(raw)))
    assert found.genres == ["a", "c"]
    assert sorted(rel for rel, _ in found.candidates) == ["a/a0.wav", "a/a1.wav", "c/c0.wav", "c/c1.wav"]
    notes = [n for n in found.notes if "symbolic link into the genre folder 'c'" in n]
    assert len(notes) == 2 and any("c_alias" in n for n in notes)


# --- M1, M5, L14: sizes that cannot run -----------------------------------------------------------
def test_tiny_or_too_many_segments_are_refused_up_front() -> None:
    from genreflow.model.pooling import check_segment_s, segment_times

    for tiny in (1e-6, 1e-7, 0.005):
        with pytest.raises(ConfigError, match="segment_s"):
            segment_times(2.0, tiny)
        with pytest.raises(ConfigError):
            check_segment_s(tiny)
    with pytest.raises(ConfigError, match="windows"):
        segment_times(3600.0, 0.01)
    assert len(segment_times(30.0, 0.01)) == 5999  # still fine for a 30 s clip


def test_audio_size_combinations_are_bounded() -> None:
    from genreflow.data.audio import AudioConfig

    with pytest.raises(ConfigError, match="audio.duration_s"):
        AudioConfig(sample_rate=384000, duration_s=3600)
    assert AudioConfig(sample_rate=48000, duration_s=3600).duration_s == 3600


@pytest.mark.parametrize("rate", [1, 500, 2_000_000])
def test_absurd_file_sample_rates_are_invalid(tmp_path: Path, rate: int) -> None:
    import soundfile as sf

    from genreflow.data.audio import decode_mono, inspect_audio

    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros(max(10, rate // 100), np.float32), rate)
    with pytest.raises(AudioDecodeError, match="implausible sample rate"):
        inspect_audio(str(path))
    with pytest.raises(AudioDecodeError, match="implausible sample rate"):
        decode_mono(str(path), duration_s=2.0)


# --- M3, M4, L1: classifiers ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "hgb"])
def test_seed_above_2_32_is_used_modulo(name: str) -> None:
    import warnings

    from genreflow.model.classifiers import HgbParams, MlpParams, build_pipeline

    params = MlpParams(hidden=(8,), max_iter=30) if name == "mlp" else HgbParams(max_iter=5)
    X = np.random.default_rng(1).normal(size=(30, 4))
    y = np.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit does not converge
        big = build_pipeline(name, params, seed=2**32 + 5).fit(X, y)
        small = build_pipeline(name, params, seed=5).fit(X, y)
    np.testing.assert_array_equal(big.predict_proba(X), small.predict_proba(X))


@pytest.mark.parametrize("build, key", [
    (lambda P: P.MlpParams(hidden=(100000, 100000)), "train.mlp.hidden"),
    (lambda P: P.MlpParams(hidden=(8,) * 20), "train.mlp.hidden"),
    (lambda P: P.MlpParams(max_iter=10**9), "train.mlp.max_iter"),
    (lambda P: P.HgbParams(max_iter=10**9), "train.hgb.max_iter"),
    (lambda P: P.HgbParams(max_leaf_nodes=10**7), "train.hgb.max_leaf_nodes"),
    (lambda P: P.LogregParams(max_iter=10**9), "train.logreg.max_iter"),
    (lambda P: P.SvmParams(calibration_folds=1000), "train.svm.calibration_folds"),
])
def test_classifier_sizes_have_upper_bounds(build, key: str) -> None:
    from genreflow.model import classifiers

    with pytest.raises(ConfigError) as caught:
        build(classifiers)
    assert str(caught.value).startswith(f"{key}=") and "\n" not in str(caught.value)


def test_svm_calibration_message_names_the_genre() -> None:
    from genreflow.model.classifiers import fit_pipeline

    X = np.random.default_rng(2).normal(size=(7, 3))
    y = np.array([0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(DataError) as caught:
        fit_pipeline("svm", None, X, y, genres=["rock", "jazz", "dub"])
    assert "'dub'" in str(caught.value) and "folds" not in str(caught.value)


# --- M12: the confusion PNG -----------------------------------------------------------------------
def test_confusion_png_is_bounded_for_many_genres() -> None:
    from PIL import Image

    from genreflow.model.reports import confusion_png

    n = 150
    matrix = np.random.default_rng(3).integers(0, 9, size=(n, n))
    metrics = {"labels": [f"genre_{i:03d}" for i in range(n)], "confusion_matrix": matrix.tolist(),
               "features": "mfcc", "accuracy": 0.5, "n_val": int(matrix.sum())}
    start = time.perf_counter()
    png = confusion_png(metrics)
    assert time.perf_counter() - start < 60  # 100 genres took 15.6 s and 1.2 GB before
    width, height = Image.open(io.BytesIO(png)).size
    assert width <= 3000 and height <= 3000


# --- M2, M15: groups ------------------------------------------------------------------------------
def test_catastrophic_group_pattern_is_stopped() -> None:
    from genreflow.model.crossval import group_pattern

    rels = ["a/" + "a" * 40 + "_00.wav", "b/x_01.wav"]
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"did not finish.*\(a\+\)\+"):
        group_pattern(rels, r"^[^/]+/(a+)+$", seconds=2)
    assert time.perf_counter() - start < 30  # 2**40 steps before: hours
    assert group_pattern(rels, r"^[^/]+/([^_]+)_") == {rels[0]: "a" * 40, rels[1]: "x"}


def test_groups_csv_mostly_unmatched_is_refused_and_partial_warns(tmp_path: Path) -> None:
    from genreflow.model.crossval import GroupsWarning, make_groups, read_group_csv

    rels = [f"{g}/{g}{i}.wav" for g in "abc" for i in range(6)]
    hashes = [f"h{i}" for i in range(len(rels))]
    mostly = tmp_path / "mostly.csv"
    mostly.write_text("relpath,group\na/a0.wav,x\n" + "".join(f"raw/{r},y{i}\n" for i, r in enumerate(rels[1:])))
    with pytest.raises(ConfigError, match=r"only 1 of its 18 rows name an indexed file"):
        make_groups(rels, hashes, read_group_csv(mostly))
    dotted = tmp_path / "dotted.csv"  # as `find .` prints them: accepted
    dotted.write_text("relpath,group\n" + "".join(f"./{r},{r[0]}{int(r[3]) % 2}\n" for r in rels))
    groups = make_groups(rels, hashes, read_group_csv(dotted))
    assert len(set(groups)) == 6
    partial = tmp_path / "partial.csv"
    partial.write_text("relpath,group\n" + "".join(f"{r},{r[0]}\n" for r in rels[:12]) + "z/gone.wav,q\n")
    with pytest.warns(GroupsWarning, match=r"12 of 13 rows name an indexed file .*6 of 18 indexed files"):
        make_groups(rels, hashes, read_group_csv(partial))


def test_low_severity_inputs_are_one_line(tmp_path):
    """L2 (a deeply nested TOML), L13 (an index relpath outside raw/), L6 (an empty file)."""
    import json

    from genreflow.config import load_config
    from genreflow.core.fs import locate
    from genreflow.data.decode import read_and_decode
    from genreflow.data.index import read_index
    from genreflow.errors import AudioDecodeError, ConfigError, DataError

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.toml"):
        load_config(deep, {})
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    record = {"relpath": "../../outside/secret.wav", "genre": "a", "label": 0, "content_hash": "0" * 64,
              "duration_s": 1.0, "sample_rate": 8000, "channels": 1, "format": "wav", "bytes": 10}
    (processed / "dataset_index.json").write_text(json.dumps({"genres": {"a": 0}, "files": [record], "invalid": []}))
    with pytest.raises(DataError, match="outside raw/"):
        read_index(str(tmp_path / "data"))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty file \(0 bytes\)"):
        read_and_decode(locate(str(tmp_path / "empty.wav")), duration_s=1.0, need_hash=False)
