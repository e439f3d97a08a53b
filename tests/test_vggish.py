"""genreflow.features.vggish_tf against a locally built VGGish stand-in (no network, no mocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from genreflow.features import vggish_tf as vggish
from genreflow.errors import ModelLoadError
from genreflow.testing import build_vggish_standin

SR = vggish.SAMPLE_RATE
pytestmark = pytest.mark.slow  # every test but the first loads TensorFlow


def sine(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def standin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vggish_standin(tmp_path_factory.mktemp("vggish") / "standin", seed=0)


@pytest.fixture(scope="session")
def model(standin_path: Path):
    return vggish.load_model(str(standin_path), threads=2)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, genreflow.features.vggish_tf; print('tensorflow' in sys.modules)"
    root = Path(vggish.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"


def test_load_model_returns_callable(model) -> None:
    emb = model(sine(2.0)).numpy()
    assert emb.shape == (2, vggish.EMBEDDING_DIM) and emb.dtype == np.float32


@pytest.mark.parametrize(("seconds", "rows"), [(30.0, 31), (10.0, 10), (0.5, 1)])
def test_row_counts(model, seconds: float, rows: int) -> None:
    emb, valid = vggish.embed_waveform(model, sine(seconds))
    assert emb.shape == (rows, 128) and emb.dtype == np.float32
    assert valid == rows
    assert np.isfinite(emb).all()


def test_valid_frames_counts_examples_starting_in_real_audio(model) -> None:
    wav = sine(30.0)
    wav[5 * SR :] = 0.0  # caller padded 5 s of audio to 30 s
    emb, valid = vggish.embed_waveform(model, wav, n_valid_samples=5 * SR)
    assert emb.shape[0] == 31
    assert valid == 6  # examples start every 15360 samples: 0, ..., 76800 < 80000
    _, valid_one = vggish.embed_waveform(model, wav, n_valid_samples=1)
    assert valid_one == 1


def test_matches_direct_hub_call_on_padded_waveform(model, standin_path: Path) -> None:
    import tensorflow_hub as hub

    direct = hub.load(str(standin_path))
    short = sine(0.5)
    padded = np.pad(short, (0, vggish.MIN_SAMPLES - short.size))
    ours, _ = vggish.embed_waveform(model, short)
    assert np.allclose(ours, direct(padded).numpy(), atol=1e-5)
    long = sine(3.3, freq=1000.0)
    ours, _ = vggish.embed_waveform(model, long)
    assert np.allclose(ours, direct(long).numpy(), atol=1e-5)


def test_a_local_model_loads_without_keras_and_keras_still_imports_after(standin_path: Path) -> None:
    """TensorFlow imports Keras 3 (and through it scikit-learn) eagerly, tensorflow_hub too:
    1.5 s of one core in every pass; genreflow's import and load skip both."""
    import subprocess
    import sys

    code = ("import sys; from genreflow.features import vggish_tf as v; "
            f"m = v.load_model({str(standin_path)!r}, threads=1); "
            "print(sorted(k for k in ('keras', 'sklearn', 'tensorflow_hub') if k in sys.modules)); "
            "import tensorflow as tf; print(tf.keras.layers.Dense(2)(tf.zeros((1, 3))).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[]", "(1, 2)"]


def test_same_seed_builds_same_model(tmp_path: Path, model) -> None:
    wav = sine(3.0, freq=250.0)
    again = vggish.load_model(str(build_vggish_standin(tmp_path / "again", seed=0)))
    other = vggish.load_model(str(build_vggish_standin(tmp_path / "other", seed=1)))
    ref, _ = vggish.embed_waveform(model, wav)
    np.testing.assert_allclose(vggish.embed_waveform(again, wav)[0], ref, rtol=0, atol=1e-6)
    assert not np.allclose(vggish.embed_waveform(other, wav)[0], ref)


def _assert_helpful(exc: ModelLoadError, handle: str) -> None:
    msg = str(exc)
    assert handle in msg
    assert "TFHUB_CACHE_DIR" in msg and "--vggish-model" in msg
    assert "Traceback" not in msg and "\n" not in msg


@pytest.mark.parametrize("kind", ["missing", "empty", "no_saved_model_pb", "corrupt_pb", "url"])
def test_bad_handles_raise_model_load_error(tmp_path: Path, kind: str) -> None:
    handle = str(tmp_path / kind)
    if kind == "empty":
        (tmp_path / kind).mkdir()
    elif kind == "no_saved_model_pb":
        (tmp_path / kind / "variables").mkdir(parents=True)
    elif kind == "corrupt_pb":
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "saved_model.pb").write_bytes(b"not a protobuf")
    elif kind == "url":
        handle = "http://127.0.0.1:9/google/vggish/1"  # discard port: refused at once, offline
    with pytest.raises(ModelLoadError) as info:
        vggish.load_model(handle)
    _assert_helpful(info.value, handle)


def test_corrupt_hub_cache_entry_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    handle = "http://127.0.0.1:9/google/vggish/1"
    entry = tmp_path / hashlib.sha1(handle.encode()).hexdigest()
    entry.mkdir()
    (entry / "leftover.txt").write_text("half a download")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        vggish.load_model(handle)
    _assert_helpful(info.value, handle)
    assert str(entry) in str(info.value)


def test_model_identity_tracks_graph_and_weights(tmp_path: Path, standin_path: Path) -> None:
    url = "https://example.org/vggish/1"
    from genreflow.features.vggish import model_identity

    assert model_identity(url) == url
    copy = tmp_path / "copy"
    shutil.copytree(standin_path, copy)
    first = model_identity(str(copy))
    assert first.startswith("sha256:") and first == model_identity(str(copy))
    assert model_identity(str(standin_path)) == first  # a copy elsewhere is the same model
    with open(copy / "saved_model.pb", "ab") as fh:
        fh.write(b"\0")
    changed_graph = model_identity(str(copy))
    assert changed_graph != first
    other = build_vggish_standin(tmp_path / "other", seed=7)
    shutil.rmtree(copy / "variables")
    shutil.copytree(other / "variables", copy / "variables")
    assert model_identity(str(copy)) != changed_graph
    with pytest.raises(ModelLoadError):
        model_identity(str(tmp_path / "missing"))


@pytest.mark.parametrize("n", [1, 15599, 15600, 30959, 30960, 31040, 16000 * 7 + 123, 480000])
def test_expected_frames_matches_model(model, n: int) -> None:
    emb, _ = vggish.embed_waveform(model, np.zeros(n, np.float32))
    assert vggish.expected_frames(n) == emb.shape[0]


def test_expected_frames_known_values() -> None:
    assert vggish.expected_frames(30 * SR) == 31
    assert vggish.expected_frames(10 * SR) == 10
    assert vggish.expected_frames(0) == 1
    with pytest.raises(ValueError, match="n_samples=-1"):
        vggish.expected_frames(-1)


@pytest.mark.parametrize(
    ("wav", "kwargs", "match"),
    [
        (np.zeros((2, 16000), np.float32), {}, "shape=\\(2, 16000\\)"),
        (np.zeros(0, np.float32), {}, "0 samples"),
        (np.array([0.0, np.nan] * 9000, np.float32), {}, "non-finite"),
        (np.zeros(16000, np.float32), {"n_valid_samples": 0}, "n_valid_samples=0"),
        (np.zeros(16000, np.float32), {"n_valid_samples": 16001}, "n_valid_samples=16001"),
    ],
)
def test_embed_rejects_bad_input(model, wav: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vggish.embed_waveform(model, wav, **kwargs)


def test_configure_tf_threads_tolerates_repeat_calls(model) -> None:
    vggish.configure_tf_threads(2)
    vggish.configure_tf_threads(3)  # TF already running: ignored, not an error
    with pytest.raises(ValueError, match="threads=0"):
        vggish.configure_tf_threads(0)


def test_tfhub_cache_defaults_to_a_folder_of_this_user(tmp_path, monkeypatch):
    """M17: not tensorflow_hub's shared /tmp/tfhub_modules, where another local user could plant
    a model under the official handle's name; tensorflow_hub is told through the environment."""
    import os
    import tempfile

    from genreflow.features import vggish_tf

    monkeypatch.setenv("TFHUB_CACHE_DIR", "")  # unset (and restored afterwards)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = str(tmp_path / "xdg" / "genreflow" / "tfhub")
    assert vggish_tf.hub_cache_dir() == expected and os.environ["TFHUB_CACHE_DIR"] == expected
    entry = vggish_tf._cache_entry(vggish_tf.DEFAULT_HANDLE)
    assert entry.startswith(expected) and not entry.startswith(os.path.join(tempfile.gettempdir(), "tfhub_modules"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice wins
    assert vggish_tf.hub_cache_dir() == str(tmp_path / "mine")
