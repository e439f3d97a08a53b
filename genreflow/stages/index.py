"""The index stage: discover, validate (locally, or as Ray tasks near the data), split, write."""

from __future__ import annotations

import functools
import json
import math
import warnings
from typing import Any, Callable

import numpy as np

from genreflow.core.fs import Location, atomic_write_text
from genreflow.core.layout import Layout
from genreflow.data.index import build_index, validate_file, write_index
from genreflow.data.splits import make_splits, splits_json
from genreflow.stages.session import cluster_cpus, quiet_ray_data, ray_session


def run_index(data_dir: str, workers: int, split_config, address: str | None = None, *, rehash: bool = False
              ) -> dict[str, Any]:
    """Index, split and write everything; return the index and splits for the summary
    (``rehash``: see ``build_index``)."""
    layout = Layout.of(data_dir)
    validate = functools.partial(validate_on_ray, address=address, workers=workers) if address else None
    index = build_index(data_dir, workers, validate, rehash=rehash)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = make_splits(index["files"], split_config)
    write_index(index, data_dir)
    atomic_write_text(layout.splits_json, splits_json(splits))
    return {"index": index, "splits": splits, "warnings": index["warnings"] + [str(w.message) for w in caught]}


def validate_batch(batch: dict[str, np.ndarray], *, raw) -> dict[str, np.ndarray]:
    """Ray Data task: validate (hash + decode) index candidates where the data is; one JSON
    record per file back to the driver (small: the audio never leaves the worker)."""
    records = [validate_file(raw, str(rel), json.loads(str(prev)) or None)
               for rel, prev in zip(batch["relpath"], batch["previous"])]
    return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


def validate_on_ray(raw: Location, relpaths: list[str], known: list, tick: Callable[[int], None], *,
                    address: str, workers: int) -> list[dict[str, Any]]:
    """Index validation as Ray tasks on the cluster at ``address`` (listing stays on the
    driver), so the bytes of a large dataset never pass through the head node."""
    import ray

    if not relpaths:
        return []
    with ray_session(address, workers):
        quiet_ray_data()
        slots = max(1, cluster_cpus())
        rows = max(1, min(64, math.ceil(len(relpaths) / slots)))
        items = [{"relpath": rel, "previous": json.dumps(prev)} for rel, prev in zip(relpaths, known)]
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / rows))
        ds = ds.map_batches(validate_batch, fn_kwargs={"raw": raw}, batch_size=rows, num_cpus=1)
        out: list[dict[str, Any]] = []
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out.extend(json.loads(str(r)) for r in batch["record"])
            tick(len(batch["record"]))
    order = {rel: i for i, rel in enumerate(relpaths)}
    return sorted(out, key=lambda r: order[r["relpath"]])
