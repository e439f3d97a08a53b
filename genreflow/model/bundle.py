"""A trained classifier and its recipe: what a model file holds and how it is checked.

The recipe lists, for each feature kind, the extractor's name, version, parameters and
fingerprint, and the audio preprocessing, so ``predict`` rebuilds exactly those extractors
with no configuration. The bytes on disk are written and read by ``model.modelfile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genreflow import __version__
from genreflow.errors import ConfigError, ModelLoadError
from genreflow.features import Extractor
from genreflow.model.classifiers import Params, describe
from genreflow.model.modelfile import load_model_file, save_model_file
from genreflow.model.pooling import check_segment_s
from genreflow.model.training import Dataset

MODEL_FORMAT = "genreflow-model/1"


@dataclass
class ModelBundle:
    """A trained pipeline plus everything needed to use it anywhere (its recipe)."""

    pipeline: Any
    genres: list[str]
    features: str
    extractors: list[dict[str, Any]]  # Extractor.recipe() per kind, in column order
    classifier: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    segment_s: float | None = None  # clip = mean of its segments' probabilities

    @property
    def fingerprints(self) -> dict[str, str]:
        return {r["name"]: r["fingerprint"] for r in self.extractors}

    def meta(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "genres": self.genres, "features": self.features,
                "extractors": self.extractors, "fingerprints": self.fingerprints,
                "classifier": self.classifier, "segment_s": self.segment_s, "versions": self.versions}

    @classmethod
    def from_meta(cls, pipeline: Any, meta: Any, where: str) -> "ModelBundle":
        """Check a loaded model's metadata; a malformed one is one clear error, never a KeyError."""
        meta = legacy_meta(meta)
        ok = (isinstance(meta, dict) and isinstance(meta.get("genres"), list) and isinstance(meta.get("features"), str)
              and isinstance(meta.get("extractors"), list) and all(isinstance(r, dict) and "name" in r
                                                                     for r in meta["extractors"]))
        if not ok or not hasattr(pipeline, "predict_proba"):
            raise ModelLoadError(f"{where} is not a usable genreflow model (its metadata is incomplete): "
                                 "retrain with `genreflow train`.")
        names = [str(r["name"]) for r in meta["extractors"]]
        if not names or len(set(names)) != len(names):
            raise ModelLoadError(f"{where} is not a usable genreflow model (its recipe lists "
                                 f"{'no feature kind' if not names else 'a feature kind twice'}): retrain with "
                                 "`genreflow train`.")
        try:
            check_segment_s(meta.get("segment_s"))
        except ConfigError as exc:
            raise ModelLoadError(f"{where} is not a usable genreflow model ({exc})") from None
        return cls(pipeline, meta["genres"], meta["features"], meta["extractors"], meta.get("classifier", {}),
                   meta.get("versions", {}), meta.get("segment_s"))


def legacy_meta(meta: Any) -> Any:
    """Metadata of a model saved by genreflow 0.1 (joblib): its MFCC recipe rebuilt from the
    parameters it stored; other kinds then fail the version check with a clear message."""
    if not isinstance(meta, dict) or "extractors" in meta or not isinstance(meta.get("fingerprints"), dict):
        return meta
    recipes = []
    for name, fp in meta["fingerprints"].items():
        section = meta.get("mfcc", {}) if name == "mfcc" else {"handle": meta.get("vggish_handle", "")}
        params = {"sample_rate": meta.get("audio", {}).get("sample_rate"), **section} if name == "mfcc" else {}
        if name == "mfcc":
            params["duration_s"] = meta.get("audio", {}).get("duration_s")
        recipes.append({"name": name, "version": 1, "section": section, "audio": meta.get("audio", {}),
                        "params": params, "fingerprint": fp})
    return {**meta, "extractors": recipes}


def make_bundle(model: Any, classifier: str, params: Params, data: Dataset, extractors: list[Extractor],
                segment_s: float | None) -> ModelBundle:
    """The model and the recipe that rebuilds its features anywhere."""
    import sklearn

    return ModelBundle(
        pipeline=model, genres=data.genres, features="+".join(e.name for e in extractors),
        extractors=[e.recipe() for e in extractors], classifier=describe(classifier, params),
        versions={"genreflow": __version__, "scikit-learn": sklearn.__version__}, segment_s=segment_s)


def save_model(bundle: ModelBundle, path: Any) -> dict[str, Any]:
    """Write the model file (skops + JSON, atomically); returns its metadata."""
    save_model_file(path, bundle.pipeline, bundle.meta())
    return bundle.meta()


def load_model_bundle(path: str, trust_pickle: bool = False) -> ModelBundle:
    """Load a saved model (local path or URI), or say how to make one (``load_model_file``
    checks that it exists, is a regular file and is not too large)."""
    pipeline, meta = load_model_file(path, trust_pickle=trust_pickle)
    return ModelBundle.from_meta(pipeline, meta, path)
