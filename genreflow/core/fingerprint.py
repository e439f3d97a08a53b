"""Fingerprints name a feature set: same extractor, version and parameters -> same folder."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

_HEX = re.compile(r"^[0-9a-f]{16}$")


def fingerprint(name: str, version: int, params: Mapping[str, Any]) -> str:
    """A short stable hash of the extractor name, its version and every parameter (defaults too).

    Canonical JSON (sorted keys) makes it identical across processes and machines.
    """
    payload = json.dumps({"name": name, "version": version, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def is_fingerprint(text: str) -> bool:
    return isinstance(text, str) and bool(_HEX.fullmatch(text))


def shard_name(keys: list[str]) -> str:
    """A shard is named from the keys it holds, so a rerun writes the same name, never a twin."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode("ascii")).hexdigest()[:20]
    return f"part-{digest}.parquet"
