"""Where genreflow reads and writes under a data directory (local path or URI)."""

from __future__ import annotations

from dataclasses import dataclass

from genreflow.core.fs import Location, locate


@dataclass(frozen=True)
class Layout:
    """Every path genreflow uses, derived from ``--data-dir`` in one place."""

    root: Location

    @classmethod
    def of(cls, data_dir: str) -> "Layout":
        return cls(locate(data_dir))

    @property
    def raw(self) -> Location:
        return self.root.join("raw")

    @property
    def processed(self) -> Location:
        return self.root.join("processed")

    @property
    def index_json(self) -> Location:
        return self.processed.join("dataset_index.json")

    @property
    def index_parquet(self) -> Location:
        return self.processed.join("index.parquet")

    @property
    def splits_json(self) -> Location:
        return self.processed.join("splits.json")

    @property
    def store(self) -> Location:
        return self.processed.join("store")

    @property
    def model(self) -> Location:
        return self.processed.join("classifier_model.zip")

    @staticmethod
    def model_uri(data_dir: str) -> str:
        """The default model's path or URI, keeping a URI's scheme and query (endpoint, options)."""
        base, sep, query = data_dir.partition("?")
        return base.rstrip("/") + "/processed/classifier_model.zip" + sep + query

    @property
    def reports(self) -> Location:
        return self.processed.join("reports")
