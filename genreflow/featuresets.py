"""Which parameters make up each feature set's fingerprint (and nothing else)."""

from __future__ import annotations

from .config import Config
from .store import FeatureSet

VGGISH_VERSION = 1  # bump when the stored embeddings change for the same parameters


def mfcc_feature_set(config: Config) -> FeatureSet:
    """MFCC values depend on the decode rate and duration and on every MFCC parameter."""
    from .mfcc import FEATURE_VERSION

    params = {"sample_rate": config.audio.sample_rate, "duration_s": config.audio.duration_s,
              **vars(config.mfcc)}
    return FeatureSet.create(config.data_dir, "mfcc", FEATURE_VERSION, params)


def vggish_feature_set(config: Config) -> FeatureSet:
    """Embeddings depend on the duration and the model (a local model by its saved_model.pb)."""
    from .vggish import FRAME_SECONDS, SAMPLE_RATE, model_identity

    params = {"sample_rate": SAMPLE_RATE, "frame_seconds": FRAME_SECONDS, "duration_s": config.audio.duration_s,
              "model": model_identity(config.vggish.handle)}
    return FeatureSet.create(config.data_dir, "vggish", VGGISH_VERSION, params)


def kinds_for(features: str) -> list[str]:
    """'vggish+mfcc' -> ['mfcc', 'vggish'] (MFCC first: it is cheap and needs no model)."""
    return sorted(features.split("+"))


def feature_set(config: Config, kind: str) -> FeatureSet:
    return mfcc_feature_set(config) if kind == "mfcc" else vggish_feature_set(config)
