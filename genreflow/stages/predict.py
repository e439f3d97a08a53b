"""Predict genres of new files with a saved model, using the extractors its recipe names.

The model file, not the current configuration, decides the preprocessing and the features,
so a model works from any folder. Only a model extractor's handle (and precision) may be
overridden, and only when the rebuilt extractor has the fingerprint the model was trained on.
Features already in the store (same content hash, same fingerprint) are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from genreflow.data.decode import Decoded
from genreflow.errors import AudioDecodeError, ConfigError
from genreflow.features import Extractor, from_recipe
from genreflow.model.classifiers import clip_proba
from genreflow.core.fs import UnsupportedURIError, exists, redact_uri
from genreflow.data.discovery import list_audio
from genreflow.stages.session import pass_uses_ray


@dataclass
class Prediction:
    path: str  # as given (a local name may hold any bytes, as surrogate escapes)
    genre: str = ""
    probability: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str = ""
    cached: bool = False  # every feature came from the store


def probability_column(genre: str) -> str:
    """A genre's probability column: prefixed, so a genre named ``path`` or ``error`` cannot
    overwrite a fixed column (the same rule as evaluate's oof_predictions.csv)."""
    return f"p_{genre}"


def prediction_columns(genres: Sequence[str]) -> list[str]:
    """The one prediction row schema: csv, jsonl, parquet, ``--format csv|json`` and the API's
    DataFrame all use it."""
    return ["path", "genre", "probability", *(probability_column(g) for g in genres), "error", "cached"]


def printable_path(path: str) -> str:
    """Any file name as text: bytes that are not UTF-8 (surrogate escapes) become ``\\xNN``,
    the same in every output format; credentials in a URI are never shown."""
    return redact_uri(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def prediction_row(prediction: Prediction, genres: Sequence[str]) -> dict[str, Any]:
    """One flat row in ``prediction_columns`` order; probabilities rounded to 6 decimals."""
    ok = not prediction.error
    return {"path": printable_path(prediction.path), "genre": prediction.genre if ok else "",
            "probability": round(prediction.probability, 6) if ok else None,
            **{probability_column(g): round(prediction.probabilities.get(g, 0.0), 6) if ok else None
               for g in genres},
            "error": prediction.error, "cached": prediction.cached}


def collect_paths(paths: list[str]) -> list[str]:
    """Files as given, folders expanded to their audio with the listing rules of ``index``."""
    return list_audio(paths)[0]


def model_extractors(bundle, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                     config: Any = None) -> list[Extractor]:
    """Rebuild the model's extractors from its recipe, which is a description to match, never a
    location to load from: where a model kind's files are (the VGGish handle, the musicnn folder)
    comes from the user (``overrides``, else ``config``: flags, genreflow.toml, the environment,
    the defaults), and the rebuilt extractor must have the fingerprint the model was trained on."""
    from genreflow.config import load_config
    from genreflow.features import registered

    known = registered()
    user = config if config is not None else load_config(None, {})
    extractors = []
    for recipe in bundle.extractors:
        changes = dict((overrides or {}).get(recipe["name"], {}))
        cls = known.get(recipe["name"])
        if cls is not None and cls.model_env is not None and cls.model_env[0] not in changes:
            changes[cls.model_env[0]] = getattr(user.section(recipe["name"]), cls.model_env[0])
        recipe = {**recipe, "section": {**recipe.get("section", {}), **changes}} if changes else recipe
        extractor = from_recipe(recipe).resolved()
        trained = recipe.get("fingerprint")
        if extractor.fingerprint() != trained:
            given = ", ".join(f"{k}={v!r}" for k, v in changes.items()) or "the model's own recipe"
            raise ConfigError(
                f"The model was trained on {recipe['name']} features with fingerprint {trained} "
                f"(parameters {recipe.get('params')}); {given} gives {extractor.fingerprint()} "
                f"(parameters {extractor.params()}). Pass the same model/precision it was trained with "
                "(--vggish-model, --musicnn-model, --precision), or retrain with `genreflow run`.")
        extractors.append(extractor)
    return extractors


class ClipFeatures:
    """Turns files into the feature rows a model expects (one per clip, or one per segment),
    from the store when every kind is there. Each file is read once: hashed (with a store)
    and decoded from the same bytes."""

    def __init__(self, extractors: list[Extractor], segment_s: float | None = None, threads: int | None = None) -> None:
        self.extractors = extractors
        self.segment_s = segment_s
        self.threads = threads or 1
        self._states: dict[str, Any] | None = None

    @property
    def states(self) -> dict[str, Any]:
        """Heavy state (models), loaded on first use: the Ray path never loads it here."""
        if self._states is None:
            self._states = {e.name: e.load(self.threads) for e in self.extractors}
        return self._states

    def known(self, data_dir: str | None) -> set[str] | None:
        """The content hashes ``data_dir``'s store holds for every kind (one column read per
        kind), or None when there is no such store (then files are decoded without a hash)."""
        from genreflow.store.featureset import stored_keys

        if not data_dir:
            return None
        sets = [e.feature_set(data_dir) for e in self.extractors]
        if not all(exists(fset.location) for fset in sets):
            return None
        return set.intersection(*(stored_keys(fset) for fset in sets))

    def stored(self, data_dir: str | None, keys: set[str]) -> dict[str, np.ndarray]:
        """content_hash -> rows, for the keys stored for every kind in ``data_dir``'s store."""
        from genreflow.model.pooling import clip_rows

        if not data_dir or not keys:
            return {}
        return clip_rows([(e.feature_set(data_dir), e.frame_seconds) for e in self.extractors], keys, self.segment_s)

    def decode(self, path: str, known: set[str] | None = None) -> Decoded:
        """One read of ``path``; a file whose hash is in ``known`` comes back undecoded (stored)."""
        from genreflow.core.fs import locate
        from genreflow.data.decode import read_and_decode

        return read_and_decode(locate(path), duration_s=self.extractors[0].audio.duration_s, need_hash=False,
                               known=known)

    def rows(self, decoded: Decoded) -> np.ndarray:
        """Feature rows [shape=(n_segments or 1, D)] of a decoded file."""
        from genreflow.model.pooling import KindFrames, combine_kinds

        kinds = []
        for e in self.extractors:
            wave = decoded.at(e.sample_rate, e.audio.duration_s)
            array, valid = e.compute(self.states[e.name], wave.samples, wave.n_valid)
            kinds.append(KindFrames(e.kind.frames(array), int(valid), e.frame_seconds))
        return combine_kinds(kinds, self.segment_s)


def clip_probability(bundle, rows: np.ndarray) -> np.ndarray:
    """A clip's probability per genre of the model (label order): the mean over its segments'
    rows, computed by the same function training and evaluate use."""
    return clip_proba(bundle.pipeline, rows, np.zeros(len(rows), np.int64), len(bundle.genres))[1][0]


def to_prediction(path: str, bundle, proba: np.ndarray, cached: bool = False) -> Prediction:
    """``proba`` [shape=(n_genres,)] in the model's genre order (a genre absent from train has 0)."""
    best = int(np.argmax(proba))
    return Prediction(path, bundle.genres[best], float(proba[best]),
                      {g: float(p) for g, p in zip(bundle.genres, proba)}, cached=cached)


@dataclass
class PredictSummary:
    files: int = 0
    cached: int = 0
    computed: int = 0
    failed: int = 0
    path: str = ""  # "in-process" (one file at a time), or the features pass: "ray" or "local pass"

    def line(self) -> str:
        return (f"predict: {self.files} files, {self.computed} computed, {self.cached} from the store, "
                f"{self.failed} failed ({self.path})")


# Up to this many files to compute, one process beats starting Ray. Measured on 2 cores (README,
# "Prediction at scale"): 1,000 MFCC files took 0.10 s each in-process against ~12 s of Ray
# start-up plus ~0.056 s each with 2 workers, so Ray pays off from ~250 files; a model kind
# (VGGish, ~0.5 CPU-s per clip) pays the start-up back after a few dozen.
IN_PROCESS_MAX = {"cpu": 256, "model": 48}


def in_process_limit(extractors: list[Extractor]) -> int:
    return IN_PROCESS_MAX["model" if any(e.uses_model for e in extractors) else "cpu"]


def predict_stream(files: list[str], bundle, extractors: list[Extractor],
                   emit: Callable[[list[Prediction]], None], *, data_dir: str | None = None,
                   config: Any = None) -> PredictSummary:
    """Predict every file of ``files`` (as ``collect_paths`` lists them), handing results to
    ``emit`` in batches as soon as they are known, in-process (a handful of files, or without a
    ``config``) or through the Ray pipeline with ``config.workers``. Each file is read once:
    where ``data_dir`` has a store, the reader hashes it first and a file stored for every kind
    is predicted from the store instead of being decoded."""
    summary = PredictSummary(files=len(files))
    features = ClipFeatures(extractors, bundle.segment_s)
    workers = config.n_workers if config is not None else 1
    from_store = StoreHits(features, data_dir, bundle, emit, summary)
    # the Ray pass pools whole clips; segment models and a handful of files stay in this process
    small = len(files) <= in_process_limit(extractors) or workers <= 1 or bundle.segment_s
    count = _in_process if small else _with_pass
    summary.path = "in-process" if count is _in_process else "ray" if pass_uses_ray(config) else "local pass"
    summary.failed = count(files, from_store, bundle, features, config, emit)
    summary.computed = len(files) - summary.failed - summary.cached
    return summary


class StoreHits:
    """Files found in the store by their hash, predicted from it a batch at a time (one read
    of the store per batch). A stored key whose rows the store cannot give (a shard lost since)
    is computed after all."""

    def __init__(self, features: ClipFeatures, data_dir: str | None, bundle, emit, summary: PredictSummary) -> None:
        self.features, self.data_dir, self.bundle, self.emit, self.summary = features, data_dir, bundle, emit, summary
        self.known = features.known(data_dir)
        self.pending: list[tuple[str, str]] = []  # (path, content hash)

    def add(self, path: str, key: str) -> None:
        self.pending.append((path, key))

    def flush(self) -> list[str]:
        """Emit the pending files' predictions; returns the paths the store could not give."""
        pending, self.pending = self.pending, []
        stored = self.features.stored(self.data_dir, {key for _, key in pending})
        found = [(path, key) for path, key in pending if key in stored]
        if found:
            self.emit([to_prediction(p, self.bundle, clip_probability(self.bundle, stored[k]), cached=True)
                       for p, k in found])
            self.summary.cached += len(found)
        return [path for path, key in pending if key not in stored]


FLUSH_EVERY = 64  # stored files predicted together (one read of the store)


def _in_process(files, from_store, bundle, features, config, emit, known=None) -> int:
    known = from_store.known if known is None else known
    failed = 0
    for n, path in enumerate(files, 1):
        try:
            decoded = features.decode(path, known)
            if decoded.stored:
                from_store.add(path, decoded.content_hash)
            else:
                emit([to_prediction(path, bundle, clip_probability(bundle, features.rows(decoded)))])
        except (AudioDecodeError, UnsupportedURIError) as exc:
            emit([Prediction(path, error=str(exc))])
            failed += 1
        except MemoryError:
            emit([Prediction(path, error="not enough memory for this file's features (lower audio.duration_s or "
                                         "the extractor's sizes)")])
            failed += 1
        except (ValueError, RuntimeError) as exc:  # feature maths on odd audio
            emit([Prediction(path, error=f"feature extraction failed: {exc}")])
            failed += 1
        if len(from_store.pending) >= FLUSH_EVERY or n == len(files):
            failed += _recompute(from_store.flush(), from_store, bundle, features, config, emit)
    return failed


def _recompute(lost: list[str], from_store, bundle, features, config, emit) -> int:
    return _in_process(lost, from_store, bundle, features, config, emit, known=set()) if lost else 0


def _with_pass(files, from_store, bundle, features, config, emit) -> int:
    import contextlib

    from genreflow.stages.extract import iter_pooled
    from genreflow.stages.workers import OK, STORED, todo_row
    from genreflow.stages.session import ray_session

    kinds = [e.name for e in features.extractors]
    todo = [todo_row("", f, kinds) for f in files]
    failed = 0
    with ray_session(config.address, config.n_workers) if pass_uses_ray(config) else contextlib.nullcontext():
        for batch in iter_pooled(config, features.extractors, todo, known=from_store.known):
            done, rows, results = [], [], []
            for i, (path, key) in enumerate(zip(batch["relpath"], batch["content_hash"])):
                parts, error, stored = [], "", True
                for e in features.extractors:
                    status = batch.get(f"status:{e.name}", np.array([""] * len(batch["relpath"])))[i]
                    stored = stored and status == STORED
                    if status == OK:
                        parts.append(batch[f"pooled:{e.name}"][i])
                    elif status != STORED:
                        error = error or str(status) or "not computed"
                if stored:
                    from_store.add(str(path), str(key))
                elif error:
                    results.append(Prediction(str(path), error=error))
                    failed += 1
                else:
                    done.append(len(results)), rows.append(np.concatenate(parts)), results.append(None)
            if rows:
                _, probas = clip_proba(bundle.pipeline, np.stack(rows), np.arange(len(rows)), len(bundle.genres))
                for slot, proba in zip(done, probas):
                    results[slot] = to_prediction(str(batch["relpath"][slot]), bundle, proba)
            emit(results)  # every slot is filled: stored files went to from_store, not here
            failed += _recompute(from_store.flush(), from_store, bundle, features, config, emit)
    return failed
