"""Predict genres of new files with a saved classifier, using the exact preprocessing and
features it was trained with (VGGish is loaded only when the model needs it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import EXTENSIONS, load_audio
from .config import Config
from .errors import AudioDecodeError, ConfigError
from .featuresets import feature_set, kinds_for
from .pooling import frames_of, pool_frames
from .store import KINDS


@dataclass
class Prediction:
    path: str
    genre: str = ""
    probability: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str = ""


def collect_paths(paths: list[str]) -> list[str]:
    """Files as given, folders expanded to the audio files below them (sorted)."""
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if not f.startswith(".") and os.path.splitext(f)[1].lower() in EXTENSIONS)
        else:
            out.append(path)
    return out


def check_compatible(bundle: dict[str, Any], config: Config) -> None:
    """Refuse a model whose features were computed with other parameters than ``config``'s."""
    for kind, trained in bundle["fingerprints"].items():
        current = feature_set(config, kind)
        if current.fingerprint != trained:
            stored = {"audio": bundle["audio"], "mfcc": bundle["mfcc"]} if kind == "mfcc" else \
                {"vggish.handle": bundle["vggish_handle"], "audio.duration_s": bundle["audio"]["duration_s"]}
            raise ConfigError(
                f"The model was trained on {kind} features with other parameters than the current configuration "
                f"(fingerprint {trained} vs {current.fingerprint}). It was trained with {stored}: set the same "
                "values (genreflow.toml, --vggish-model or $GENREFLOW_VGGISH_MODEL) or retrain with `genreflow run`.")


class FeatureExtractor:
    """Turns one file into the pooled vector the model expects."""

    def __init__(self, config: Config, features: str) -> None:
        self.config = config
        self.kinds = kinds_for(features)
        self.model = None
        if "vggish" in self.kinds:
            from .vggish import load_model

            self.model = load_model(config.vggish.handle)

    def vector(self, path: str) -> np.ndarray:
        from .mfcc import compute_mfcc, valid_frames
        from .vggish import SAMPLE_RATE, embed_waveform

        parts = []
        for kind in self.kinds:
            if kind == "mfcc":
                wave = load_audio(path, sample_rate=self.config.audio.sample_rate, duration_s=self.config.audio.duration_s)
                array = compute_mfcc(y=wave.samples, sr=wave.sample_rate, config=self.config.mfcc)
                valid = valid_frames(wave.n_valid, hop_length=self.config.mfcc.hop_length, n_frames=array.shape[1])
            else:
                wave = load_audio(path, sample_rate=SAMPLE_RATE, duration_s=self.config.audio.duration_s)
                array, valid = embed_waveform(self.model, np.clip(wave.samples, -1.0, 1.0), wave.n_valid)
            frames = frames_of(KINDS[kind], array, *array.shape)
            parts.append(pool_frames(frames[None], np.array([valid]))[0])
        return np.concatenate(parts)


def predict_files(paths: list[str], bundle: dict[str, Any], config: Config) -> list[Prediction]:
    """One Prediction per file; unreadable files get an ``error`` and the others go on."""
    check_compatible(bundle, config)
    extractor = FeatureExtractor(config, bundle["features"])
    pipeline, genres = bundle["pipeline"], bundle["genres"]
    classes = [genres[int(c)] for c in pipeline.classes_]
    results = []
    for path in collect_paths(paths):
        try:
            if not os.path.exists(path):
                raise AudioDecodeError("no such file")
            proba = pipeline.predict_proba(extractor.vector(path)[None])[0]
        except AudioDecodeError as exc:
            results.append(Prediction(path, error=str(exc)))
            continue
        best = int(np.argmax(proba))
        probabilities = {g: 0.0 for g in genres}  # a genre absent from train gets 0
        probabilities.update({c: float(p) for c, p in zip(classes, proba)})
        results.append(Prediction(path, classes[best], float(proba[best]), probabilities))
    return results
