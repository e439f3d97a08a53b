"""Red-team round 3, H1 / M17 / L12: a SavedModel is code, so only pure tensor ops may run.

Each test builds real SavedModels in tmp dirs: one that reads and writes files (as the red-team's
``build_savedmodel.py``), the genreflow stand-in, and a TF Hub cache entry holding the hostile one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from genreflow.errors import ModelLoadError

pytestmark = pytest.mark.slow  # TensorFlow


def _build_hostile(folder: Path, marker: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            secret = tf.io.read_file("/etc/hostname")
            tf.io.write_file(str(marker), tf.strings.join(["read: ", secret]))
            n = tf.shape(x)[0]
            rows = 1 + ((1 + (n - 400) // 160) - 96) // 96
            return tf.zeros(tf.stack([rows, 128]), tf.float32)

    tf.saved_model.save(Evil(), str(folder))
    return folder


def _build_printing(folder: Path) -> Path:
    """Side effect hidden in a callee: __call__ -> tf.function -> PrintV2."""
    import tensorflow as tf

    @tf.function
    def inner(x):
        tf.print("hello from a model")
        return tf.zeros([1, 128]) + tf.reduce_sum(x) * 0

    class Sneaky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return inner(x)

    tf.saved_model.save(Sneaky(), str(folder))
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hostile")
    marker = base / "PWNED.txt"
    return _build_hostile(base / "evil_sm", marker), marker


def test_hostile_savedmodel_is_refused_before_it_runs(hostile) -> None:
    from genreflow.features.vggish_tf import load_model

    folder, marker = hostile
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    assert "'ReadFile'" in message or "'WriteFile'" in message
    assert not marker.exists()  # nothing ran


def test_side_effect_in_a_callee_is_found(tmp_path: Path) -> None:
    from genreflow.features.tf_runtime import savedmodel_ops_problem

    problem = savedmodel_ops_problem(str(_build_printing(tmp_path / "sneaky")))
    assert problem and "inference_inner" in problem  # the callee, not __call__, holds the print


def test_standin_is_accepted(standin_model: str) -> None:
    from genreflow.features.tf_runtime import savedmodel_ops_problem
    from genreflow.features.vggish_tf import load_model

    assert savedmodel_ops_problem(standin_model) is None
    model = load_model(standin_model)
    assert callable(model)


def test_full_size_standin_is_accepted(tmp_path: Path) -> None:
    from genreflow.features.tf_runtime import savedmodel_ops_problem
    from genreflow.testing import build_vggish_standin

    # full_size only changes layer counts; build it tiny-seeded but with the real layer graph
    folder = build_vggish_standin(tmp_path / "full", full_size=True, seed=1)
    assert savedmodel_ops_problem(str(folder)) is None


def test_planted_tfhub_cache_entry_is_refused(hostile, tmp_path: Path, monkeypatch) -> None:
    """M17: a SavedModel planted at $TFHUB_CACHE_DIR/sha1(handle) is checked like a local folder."""
    from genreflow.features.vggish_tf import DEFAULT_HANDLE, load_model

    folder, marker = hostile
    cache = tmp_path / "tfhub"
    entry = cache / hashlib.sha1(DEFAULT_HANDLE.encode()).hexdigest()
    shutil.copytree(folder, entry)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with pytest.raises(ModelLoadError) as info:
        load_model(DEFAULT_HANDLE)
    assert str(entry) in str(info.value) and ("WriteFile" in str(info.value) or "ReadFile" in str(info.value))
    assert not marker.exists()


def test_tf1_savedmodel_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    from genreflow.features.tf_runtime import savedmodel_ops_problem

    folder = tmp_path / "tf1"
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None])
        y = tf.identity(x)
        with tf.compat.v1.Session() as sess:
            builder = tf.compat.v1.saved_model.Builder(str(folder))
            sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    problem = savedmodel_ops_problem(str(folder))
    assert problem and "TensorFlow 1" in problem


def test_model_identity_reads_in_chunks_and_is_unchanged(standin_model: str, tmp_path: Path) -> None:
    """L12: the identity is the same sha256 as a whole-file read, computed in bounded chunks."""
    from genreflow.features.vggish import model_identity

    digest = hashlib.sha256()
    for name in ("saved_model.pb", "saved_model.pbtxt", "variables/variables.index"):
        part = Path(standin_model) / name
        if part.is_file():
            digest.update(name.encode() + b"\0" + part.read_bytes())
    assert model_identity(standin_model) == f"sha256:{digest.hexdigest()}"
