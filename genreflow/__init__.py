"""genreflow: music-genre recognition at scale (Ray Data + a Parquet feature store)."""

__version__ = "0.1.0"
