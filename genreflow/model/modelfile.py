"""Classifier files that cannot run code: one zip holding the pipeline in skops format and the
metadata as JSON.

A pickle (joblib) model runs whatever its author put in ``__reduce__`` the moment it is
loaded, so ``predict --model downloaded.pkl`` would be a remote shell. skops stores objects as
a schema plus arrays and rebuilds only types it is told to trust; genreflow trusts exactly the
types its own classifiers are made of (``MODEL_TYPES``) and refuses any other file with one
line. Old joblib models load only when the caller passes ``trust_pickle=True``.

Layout of the zip: ``genreflow-model.json`` (format marker and version), ``meta.json`` (genres,
features, fingerprints, parameters, versions) and ``pipeline.skops``.
"""

from __future__ import annotations

import io
import json
import numbers
import warnings
import zipfile
from typing import Any

from genreflow.errors import ConfigError, ModelLoadError
from genreflow.core.fs import Location, atomic_write_bytes, locate, not_regular_reason, read_bytes

FORMAT = "genreflow-model"
FORMAT_VERSION = 1
MARKER, META, PIPELINE = "genreflow-model.json", "meta.json", "pipeline.skops"
REQUIRED_META = ("genres", "features", "fingerprints")

# Every type a genreflow classifier file may contain: a scikit-learn Pipeline of StandardScaler
# and LogisticRegression, SVC (alone or in CalibratedClassifierCV), MLPClassifier or
# HistGradientBoostingClassifier, and what those hold once fitted (collected from the schema of
# saved pipelines of every genreflow.model.classifiers builder, 2 and 3 classes; numpy/builtin scalars
# added for other hyperparameter values). A new classifier kind must add its types here.
MODEL_TYPES = frozenset({
    "builtins.bool", "builtins.dict", "builtins.float", "builtins.int", "builtins.list", "builtins.NoneType",
    "builtins.str", "builtins.tuple",
    "numpy.bool_", "numpy.dtype", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64", "numpy.ndarray",
    "numpy.uint64", "numpy.random._generator.Generator", "numpy.random._pcg64.PCG64",
    "numpy.random.mtrand.RandomState",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.svm._classes.SVC",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval", "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
})
# The ones skops does not trust by default (skops.io.get_untrusted_types on saved models):
# passed to skops.io.loads explicitly, after the file was checked against MODEL_TYPES.
SKOPS_TRUSTED = sorted({
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
})
# Size limits, checked before anything is read or inflated: the file, and the uncompressed size each
# zip member declares (zipfile never inflates past the declared size). genreflow's own models are
# far below them (a 100-genre hgb model is ~10 MB).
MAX_MODEL_BYTES = 2 << 30
MAX_MEMBER_BYTES = {MARKER: 64 << 10, META: 16 << 20, PIPELINE: MAX_MODEL_BYTES}
MAX_SKOPS_SCHEMA_BYTES = 256 << 20
# a pickle (protocol 2+), or joblib's zlib, gzip, bz2, xz, lzma and lz4 wrappings of one
_PICKLE_STARTS = (b"\x80", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ",
                  b"]\x00\x00", b'\x04"M\x18')


class PickleModelWarning(UserWarning):
    """A model in pickle format was loaded because the caller trusts it; pickles can run code."""


def save_model_file(loc: Location, pipeline: Any, meta: dict[str, Any]) -> None:
    """Write the pipeline (skops) and ``meta`` (JSON) as one zip, atomically."""
    import skops.io as sio

    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"model metadata lacks {', '.join(missing)}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MARKER, json.dumps({"format": FORMAT, "version": FORMAT_VERSION}))
        archive.writestr(META, json.dumps(meta, indent=2, sort_keys=True, default=str))
        archive.writestr(PIPELINE, sio.dumps(pipeline), compress_type=zipfile.ZIP_STORED)  # already a zip
    atomic_write_bytes(loc, buffer.getvalue())


def load_model_file(path_or_uri: str, trust_pickle: bool = False) -> tuple[Any, dict[str, Any]]:
    """(pipeline, meta) from a genreflow model file; ModelLoadError for anything else.

    An old joblib/pickle model (genreflow before this format) is loaded only with ``trust_pickle=True`` (with a
    PickleModelWarning), since unpickling a hostile file runs its code.
    """
    data = _read_model_bytes(path_or_uri)
    if data.startswith(b"PK\x03\x04"):
        pipeline, meta = _load_zip(path_or_uri, data)
    elif data.startswith(_PICKLE_STARTS):
        pipeline, meta = _load_pickle(path_or_uri, data, trust_pickle)
    else:  # never quote the bytes: the file may be private (--model /etc/shadow)
        raise ModelLoadError(f"{path_or_uri} is not a genreflow model file (neither a zip nor a pickle): "
                             "pass the classifier_model.zip written by `genreflow train`.")
    _check_meta(path_or_uri, pipeline, meta)
    return pipeline, meta


def _read_model_bytes(name: str) -> bytes:
    """The model file's bytes, read only when it is a regular file (a FIFO would block for ever,
    /dev/zero never end) of at most MAX_MODEL_BYTES. Every problem is one ModelLoadError (exit 3)."""
    import pyarrow.fs as pafs

    try:
        loc = locate(name)
        info = loc.fs.get_file_info(loc.path)
    except ConfigError as exc:  # an unknown URI scheme
        raise ModelLoadError(str(exc)) from None
    except OSError as exc:
        raise ModelLoadError(f"Cannot reach the classifier at {name} ({exc}): check the path or URI.") from None
    if info.type == pafs.FileType.NotFound:
        raise ModelLoadError(f"No classifier at {name}: run `genreflow train` (or `genreflow run`) first, "
                             "or pass --model FILE.")
    if info.type == pafs.FileType.Directory:
        raise ModelLoadError(f"{name} is a folder, not a model file: pass the classifier_model.zip inside it.")
    reason = not_regular_reason(loc)
    if reason:
        raise ModelLoadError(f"{name} is {reason.removeprefix('not a regular file (').rstrip(')')}, not a model "
                             "file: pass the classifier_model.zip written by `genreflow train`.")
    if info.size is not None and info.size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{name} is {info.size} bytes, over the {MAX_MODEL_BYTES}-byte limit for a model file: "
                             "not a genreflow model.")
    try:
        data = read_bytes(loc, limit=MAX_MODEL_BYTES)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read the classifier at {name} ({exc.strerror or exc}).") from None
    if len(data) > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{name} is over the {MAX_MODEL_BYTES}-byte limit for a model file: not a genreflow "
                             "model.")
    return data


def _checked_read(archive: zipfile.ZipFile, member: str, limit: int, name: str) -> bytes:
    """One zip member, refused when it declares more than ``limit`` bytes (a zip bomb)."""
    size = archive.getinfo(member).file_size
    if size > limit:
        raise ModelLoadError(f"{name} is not a usable genreflow model: its {member} would inflate to {size} bytes, "
                             f"over the {limit}-byte limit (a zip bomb?).")
    return archive.read(member)


def _load_zip(name: str, data: bytes) -> tuple[Any, dict[str, Any]]:
    """Check the marker, read meta.json, then the pipeline with skops (types checked first)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if MARKER not in names:
                raise ModelLoadError(f"{name} is not a genreflow model file (a zip archive without {MARKER}).")
            marker = json.loads(_checked_read(archive, MARKER, MAX_MEMBER_BYTES[MARKER], name))
            if not isinstance(marker, dict) or marker.get("format") != FORMAT:
                raise ModelLoadError(f"{name} is not a genreflow model file (its {MARKER} names another format).")
            if marker.get("version") != FORMAT_VERSION:
                raise ModelLoadError(f"{name} is a genreflow model of format version {marker.get('version')}; this "
                                     f"genreflow reads version {FORMAT_VERSION}: retrain with `genreflow train` or "
                                     "use the genreflow version that wrote it.")
            missing = sorted({META, PIPELINE} - names)
            if missing:
                raise ModelLoadError(f"{name} is a damaged genreflow model (no {', '.join(missing)} inside): retrain "
                                     "with `genreflow train`.")
            meta = json.loads(_checked_read(archive, META, MAX_MEMBER_BYTES[META], name))
            blob = _checked_read(archive, PIPELINE, MAX_MEMBER_BYTES[PIPELINE], name)
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError, RecursionError, MemoryError) as exc:
        raise ModelLoadError(f"{name} is a damaged genreflow model file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}): retrain "
                             "with `genreflow train`.") from None
    return _skops_loads(name, blob), meta


def _schema_types(node: Any, found: set[str]) -> set[str]:
    """Every 'module.Class' named in a skops schema (the objects the file would build)."""
    if isinstance(node, dict):
        if isinstance(node.get("__class__"), str) and isinstance(node.get("__module__"), str):
            found.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            _schema_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_types(value, found)
    return found


def _skops_loads(name: str, blob: bytes) -> Any:
    import skops.io as sio

    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as inner:
            inflated = sum(info.file_size for info in inner.infolist())
            if inflated > MAX_MODEL_BYTES:
                raise ModelLoadError(f"{name} is not a usable genreflow model: its pipeline would inflate to "
                                     f"{inflated} bytes, over the {MAX_MODEL_BYTES}-byte limit (a zip bomb?).")
            schema = json.loads(_checked_read(inner, "schema.json", MAX_SKOPS_SCHEMA_BYTES, name))
        foreign = sorted(_schema_types(schema, set()) - MODEL_TYPES)
        foreign += sorted(set(sio.get_untrusted_types(data=blob)) - set(SKOPS_TRUSTED) - set(foreign))
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError, EOFError, RecursionError, MemoryError) as exc:
        raise ModelLoadError(f"{name} is a damaged genreflow model file (its pipeline cannot be read: "
                             f"{type(exc).__name__}: {exc}): retrain with `genreflow train`.") from None
    if foreign:
        raise ModelLoadError(f"{name} holds types a genreflow classifier never contains ({', '.join(foreign[:5])}"
                             f"{' ...' if len(foreign) > 5 else ''}): refused, since loading them could run code. "
                             "Use a model written by `genreflow train`.")
    try:
        return sio.loads(blob, trusted=SKOPS_TRUSTED)
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on damaged files; all mean "unusable"
        raise ModelLoadError(f"{name} is a damaged genreflow model file (its pipeline cannot be rebuilt: "
                             f"{type(exc).__name__}: {exc}): retrain with `genreflow train`.") from None


def _load_pickle(name: str, data: bytes, trust_pickle: bool) -> tuple[Any, dict[str, Any]]:
    """An old joblib bundle {'pipeline': ..., 'genres': ..., ...}, only when trusted."""
    if not trust_pickle:
        raise ModelLoadError(f"{name} is a model in pickle (joblib) format, which can run code when loaded: pass "
                             "--trust-pickle only for a file from a trusted source, or retrain with `genreflow train` "
                             "to write the safe format.")
    import joblib

    warnings.warn(f"loading {name} in pickle format because --trust-pickle was given: pickle model files can run "
                  "code; retrain with `genreflow train` to write the safe format.", PickleModelWarning, stacklevel=3)
    try:
        bundle = joblib.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - anything a broken pickle raises means "not a model"
        raise ModelLoadError(f"{name} is not a genreflow model file ({type(exc).__name__}: {exc}).") from None
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise ModelLoadError(f"{name} is not a genreflow model file (a pickle without a 'pipeline' inside).")
    return bundle["pipeline"], {k: v for k, v in bundle.items() if k != "pipeline"}


def _check_meta(name: str, pipeline: Any, meta: Any) -> None:
    """Refuse a bundle whose metadata callers would trip over (KeyError, wrong labels)."""
    problem = None
    if not isinstance(meta, dict):
        problem = "its metadata is not a JSON object"
    elif missing := [key for key in REQUIRED_META if key not in meta]:
        problem = f"its metadata lacks {', '.join(missing)}"
    elif not isinstance(meta["genres"], list) or not all(isinstance(g, str) for g in meta["genres"]):
        problem = "'genres' is not a list of names"
    elif len(set(meta["genres"])) != len(meta["genres"]):
        problem = "'genres' names a genre twice"
    elif not isinstance(meta["fingerprints"], dict):
        problem = "'fingerprints' is not a mapping of feature kind to fingerprint"
    elif not hasattr(pipeline, "predict"):
        problem = "what it holds is not a classifier"
    else:
        labels = [int(c) for c in getattr(pipeline, "classes_", []) if isinstance(c, numbers.Integral)]
        if labels and not 0 <= min(labels) <= max(labels) < len(meta["genres"]):
            problem = f"the classifier predicts labels up to {max(labels)} for {len(meta['genres'])} genres"
    if problem:
        raise ModelLoadError(f"{name} is an incomplete genreflow model ({problem}): retrain with `genreflow train`.")
