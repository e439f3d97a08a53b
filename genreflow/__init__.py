"""genreflow: music-genre recognition at scale (Ray pipeline, Parquet feature store, scikit-learn).

The Python API (``run``, ``load_model``) is imported on first use, so ``import genreflow``
and ``genreflow --help`` stay instant.
"""

__version__ = "0.3.0"

__all__ = ["feature_array", "load_model", "read_features", "run"]


def __getattr__(name: str):
    if name in __all__:
        from genreflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'genreflow' has no attribute {name!r}")
