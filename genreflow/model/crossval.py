"""K-fold cross-validation a researcher can trust: grouped, stratified, repeatable.

One 80/20 split moves by about ±6 points on a 500-clip set, so settings are compared on the
mean ± std over K folds (optionally R repeats with other fold draws). Files that must not be
on both sides of a fold stay in one group: identical content (the same ``content_hash``,
as in ``splits``) and any user group, e.g. an artist (Sturm 2013: the same artist in train
and test inflates GTZAN accuracy). Rows may be clip vectors or segments; segments follow
their clip's fold, and a clip's probability is the mean of its segments'.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import multiprocessing
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from genreflow.model.classifiers import Params, clip_proba, describe, fit_pipeline, spec
from genreflow.model.classifiers import tune as tune_params
from genreflow.errors import ConfigError, DataError


def make_groups(relpaths: Sequence[str], content_hashes: Sequence[str],
                user_groups: Mapping[str, str] | None = None) -> np.ndarray:
    """Group of each file: files sharing a content hash or a user group, transitively.

    Returns np.ndarray [shape=(n,)] of str, each group named by its smallest relpath, so the
    names (and the folds drawn from them) do not depend on the order of the files. Files
    missing from ``user_groups`` are grouped by content only. A ``user_groups`` that names
    none of the files is a ConfigError (the relpaths are likely written differently).
    """
    if len(relpaths) != len(content_hashes):
        raise DataError(f"{len(relpaths)} relpaths but {len(content_hashes)} content hashes.")
    parent = list(range(len(relpaths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}

    def join(key: tuple[str, str], i: int) -> None:
        j = first.setdefault(key, i)
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)

    for i, content in enumerate(content_hashes):
        join(("content", content), i)
    if user_groups:
        named = [(i, user_groups[rel]) for i, rel in enumerate(relpaths) if rel in user_groups]
        if relpaths and not named:
            example = next(iter(user_groups))
            raise ConfigError(f"None of the {len(user_groups)} relpaths in the groups file is an indexed file "
                              f"(e.g. {example!r}); write them relative to raw/, like {relpaths[0]!r}.")
        if isinstance(user_groups, GroupTable):
            check_group_coverage(user_groups, relpaths)
        for i, group in named:
            join(("user", group), i)
    roots = [find(i) for i in range(len(relpaths))]
    name: dict[int, str] = {}
    for rel, root in zip(relpaths, roots):
        name[root] = min(name.get(root, rel), rel)
    return np.array([name[root] for root in roots], dtype=object)


class GroupTable(dict):
    """relpath -> group read from a ``--groups`` CSV; ``source`` names the file."""
    source: str = ""


class GroupsWarning(UserWarning):
    """A groups CSV leaves some rows or indexed files unmatched (counts in the message)."""


MIN_GROUP_CSV_MATCH = 0.5  # below this share of a CSV's rows naming indexed files, it is refused


def check_group_coverage(table: GroupTable, relpaths: Sequence[str]) -> None:
    """Under half of a groups CSV's rows naming indexed files (relpaths written another way, so
    the grouping would silently not happen) is a ConfigError; a smaller gap one GroupsWarning."""
    indexed = set(relpaths)
    matched = sum(1 for rel in table if rel in indexed)
    ungrouped = sum(1 for rel in indexed if rel not in table)
    unmatched = len(table) - matched
    if matched < MIN_GROUP_CSV_MATCH * len(table):
        example = next(rel for rel in table if rel not in indexed)
        raise ConfigError(f"{table.source}: only {matched} of its {len(table)} rows name an indexed file (e.g. "
                          f"{example!r} is not one); write relpaths relative to raw/, like {relpaths[0]!r}.")
    if unmatched or ungrouped:
        warnings.warn(f"{table.source}: {matched} of {len(table)} rows name an indexed file ({unmatched} do not); "
                      f"{ungrouped} of {len(indexed)} indexed files are in no row and are grouped by content only.",
                      GroupsWarning, stacklevel=3)


def _search_all(regex: str, relpaths: list[str]) -> dict[str, str]:
    matches = ((rel, re.search(regex, rel)) for rel in relpaths)
    return {rel: m.group(1) for rel, m in matches if m and m.group(1)}


def pattern_seconds(n_paths: int) -> float:
    """Time allowed to match a --group-pattern: 10 s plus 1 ms per file (sane patterns need µs)."""
    return 10.0 + n_paths / 1000


def group_pattern(relpaths: Sequence[str], regex: str, seconds: float | None = None) -> dict[str, str]:
    """relpath -> group: the first capture group of ``re.search(regex, relpath)``.

    A file the pattern does not match (or whose group captures nothing) is left out, i.e.
    forms its own group in ``make_groups``. E.g. '^[^/]+/([^_]+)_' groups 'rock/acdc_01.wav'
    under 'acdc'. Python's ``re`` has no timeout and a pattern such as ``(a+)+$`` backtracks
    for hours, so the matching runs in a separate process stopped after ``seconds``
    (``pattern_seconds`` by default): a ConfigError then names the pattern.
    """
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"evaluate.group_pattern={regex!r} is invalid: not a regular expression ({exc}).") from None
    if pattern.groups < 1:
        raise ConfigError(f"evaluate.group_pattern={regex!r} is invalid: it needs a capture group around the part "
                          "of the relpath that names the group, e.g. '^[^/]+/([^_]+)_'.")
    budget = pattern_seconds(len(relpaths)) if seconds is None else seconds
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # spawn: no fork of a threaded driver
        pending = pool.apply_async(_search_all, (regex, list(relpaths)))
        try:
            out = pending.get(timeout=budget)
        except multiprocessing.TimeoutError:
            raise ConfigError(f"evaluate.group_pattern={regex!r} did not finish matching {len(relpaths)} relpaths in "
                              f"{budget:.0f} s (nested quantifiers such as (a+)+ backtrack exponentially): write it "
                              "without a repeat inside a repeat, e.g. '^[^/]+/([^_]+)_'.") from None
    if relpaths and not out:
        raise ConfigError(f"evaluate.group_pattern={regex!r} matches none of the {len(relpaths)} files "
                          f"(e.g. {relpaths[0]!r}); it is searched in each relpath under raw/.")
    return out


def read_group_csv(path: str | Path) -> dict[str, str]:
    """relpath -> group from a CSV with a header naming ``relpath`` and ``group`` (any order).

    Blank lines are skipped; a relpath listed twice must name the same group; a leading ``./``
    is dropped. ``make_groups`` refuses a table whose rows mostly name no indexed file
    (``check_group_coverage``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"evaluate.groups={str(path)!r} is invalid: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as a UTF-8 CSV file ({exc}).") from None
    reader = csv.reader(io.StringIO(text))
    out = GroupTable()
    out.source = str(path)
    line_of: dict[str, int] = {}
    try:
        header = next(reader, None)
        columns = [c.strip().lower() for c in header or []]
        if "relpath" not in columns or "group" not in columns:
            raise ConfigError(f"{path} line 1: the header must name the columns relpath,group "
                              f"(got {','.join(header or [])!r}).")
        at_rel, at_group = columns.index("relpath"), columns.index("group")
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ConfigError(f"{path} line {line}: expected {len(columns)} fields ({','.join(header)}), "
                                  f"got {len(row)}: {','.join(row)!r}.")
            rel, group = row[at_rel].strip(), row[at_group].strip()
            while rel.startswith("./"):  # as `find .` prints them
                rel = rel[2:]
            if not rel or not group:
                raise ConfigError(f"{path} line {line}: empty relpath or group in {','.join(row)!r}.")
            if out.get(rel, group) != group:
                raise ConfigError(f"{path} line {line}: {rel!r} is already in group {out[rel]!r} "
                                  f"(line {line_of[rel]}).")
            out[rel], line_of[rel] = group, line_of.get(rel, line)
    except csv.Error as exc:
        raise ConfigError(f"{path} line {reader.line_num}: not valid CSV ({exc}).") from None
    if not out:
        raise ConfigError(f"{path} has no rows: write one line 'relpath,group' per file after the header.")
    return out


def fold_seed(seed: int, repeat: int) -> int:
    """A random_state per (seed, repeat), so repeats draw unrelated fold assignments."""
    return int.from_bytes(hashlib.sha256(f"folds:{seed}:{repeat}".encode()).digest()[:4], "little")


def check_fold_groups(labels: np.ndarray, groups: np.ndarray, k: int, genres: Sequence[str] | None = None) -> None:
    """Every genre needs at least k groups, or some fold would test none of its files. The
    message names the genre with the fewest groups, so the fold count it suggests works."""
    counts = {label: len(np.unique(groups[labels == label])) for label in np.unique(labels)}
    label, n = min(counts.items(), key=lambda kv: (kv[1], kv[0])) if counts else (None, k)
    if n < k:
        name = genres[int(label)] if genres is not None else getattr(label, "item", lambda: label)()
        fix = f"use --folds {n} or fewer, " if n >= 2 else ""
        raise ConfigError(f"Genre {name!r} has {n} group(s) of files, fewer than folds={k}, so some fold would "
                          f"test none of its files: {fix}add files of {name!r}, or group less (identical files "
                          "always form one group; --groups/--group-pattern merge more).")


def assign_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int, repeat: int = 0,
                 genres: Sequence[str] | None = None) -> np.ndarray:
    """Fold (0..k-1) of each clip: StratifiedGroupKFold, shuffled by (seed, repeat).

    labels, groups [shape=(n,)] (groups from ``make_groups``). Every group lies in one fold;
    genres are spread as evenly as whole groups allow. The result depends on the files'
    labels and group names, not on their order. ``genres`` names integer labels in errors.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    if len(labels) != len(groups):
        raise DataError(f"{len(labels)} labels but {len(groups)} groups.")
    ok = isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 2
    if not ok:
        raise ConfigError(f"evaluate.folds={k!r} is invalid: must be an integer in [2, inf).")
    check_fold_groups(labels, groups, k, genres)
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=fold_seed(seed, repeat))
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels, groups)):
        folds[test] = fold
    return folds


def assign_repeats(labels: np.ndarray, groups: np.ndarray, k: int, seed: int, repeats: int = 1,
                   genres: Sequence[str] | None = None) -> np.ndarray:
    """``assign_folds`` for repeats 0..R-1: np.ndarray [shape=(R, n)]."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"evaluate.repeats={repeats!r} is invalid: must be an integer in [1, inf).")
    return np.stack([assign_folds(labels, groups, k, seed, r, genres) for r in range(repeats)])


@dataclass
class CvResult:
    """Out-of-fold results over R repeats x K folds (fold-level arrays are repeat-major)."""

    genres: list[str]
    classifier: dict[str, Any]  # classifiers.describe() of the configured params
    y: np.ndarray  # [shape=(n_clips,)] true labels
    folds: np.ndarray  # [shape=(R, n_clips)] fold of each clip in each repeat
    oof_proba: np.ndarray  # [shape=(R, n_clips, n_genres)] out-of-fold clip probabilities
    fold_accuracy: np.ndarray  # [shape=(R*K,)]
    fold_f1_macro: np.ndarray  # [shape=(R*K,)]
    fold_prf: np.ndarray  # [shape=(R*K, 3, n_genres)] precision, recall, F1; NaN where undefined
    confusion: np.ndarray  # [shape=(n_genres, n_genres)] rows true, summed over all R*K folds
    tuned: list[dict[str, Any]] = field(default_factory=list)  # per fold, when tuned

    @property
    def predicted(self) -> np.ndarray:
        """[shape=(R, n_clips)] argmax of the out-of-fold probabilities."""
        return np.argmax(self.oof_proba, axis=2)

    @property
    def n_repeats(self) -> int:
        return int(self.folds.shape[0])

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1

    def per_genre(self) -> dict[str, dict[str, float | int | None]]:
        """Per genre: precision/recall/F1 mean and std over the folds where each is defined."""
        out: dict[str, dict[str, float | int | None]] = {}
        for g, genre in enumerate(self.genres):
            entry: dict[str, float | int | None] = {}
            for m, metric in enumerate(("precision", "recall", "f1")):
                mean, std = _mean_std(self.fold_prf[:, m, g])
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean, std
            entry["support"] = int((self.y == g).sum())
            out[genre] = entry
        return out


def _mean_std(values: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and population std (ddof=0) of the defined values; None when none is."""
    values = values[~np.isnan(values)]
    return (float(values.mean()), float(values.std())) if len(values) else (None, None)


def cross_validate(X: np.ndarray, y: np.ndarray, clip_ids: np.ndarray, folds_per_clip: np.ndarray,
                   genres: Sequence[str], classifier: str, params: Params | None = None, seed: int = 0,
                   tune: bool = False, *, groups: np.ndarray | None = None, inner_folds: int = 3,
                   progress: Callable[[int, int, float], None] | None = None) -> CvResult:
    """Fit on each fold's training rows, predict its test clips, score per fold.

    X [shape=(n_rows, n_features)]: clip vectors or segments; clip_ids [shape=(n_rows,)] the
    clip (0..n_clips-1) of each row (``np.arange(n_clips)`` for clip-level rows); y
    [shape=(n_clips,)] integer labels into ``genres``; folds_per_clip [shape=(n_clips,)] or
    [shape=(R, n_clips)] from ``assign_folds``/``assign_repeats``. With ``tune`` each training
    fold picks its own grid point by inner CV over ``groups`` [shape=(n_clips,)] (default: the
    clip itself, so a clip's segments share an inner fold). ``progress(repeat, fold,
    accuracy)`` is called after each fold.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    entry = spec(classifier)
    params = entry.params() if params is None else params
    X, y, clip_ids = np.asarray(X), np.asarray(y, dtype=np.int64), np.asarray(clip_ids, dtype=np.int64)
    folds = np.atleast_2d(np.asarray(folds_per_clip, dtype=np.int64))
    n_clips, n_genres = len(y), len(genres)
    _check_inputs(X, y, clip_ids, folds, n_genres)
    row_y = y[clip_ids]
    row_groups = (np.asarray(groups) if groups is not None else np.arange(n_clips))[clip_ids]
    labels = list(range(n_genres))
    oof = np.zeros((len(folds), n_clips, n_genres))
    accuracy, f1_macro, prf, tuned = [], [], [], []
    confusion = np.zeros((n_genres, n_genres), dtype=np.int64)
    for r, fold_of in enumerate(folds):
        for k in range(int(fold_of.max()) + 1):
            test_clip = fold_of == k
            if not test_clip.any():  # a fold number nobody holds (hand-made folds)
                continue
            test, train = test_clip[clip_ids], ~test_clip[clip_ids]
            fold_params = params
            if tune:
                fold_params, score = tune_params(classifier, params, X[train], row_y[train], groups=row_groups[train],
                                                 seed=seed, inner_folds=inner_folds)
                tuned.append({"repeat": r, "fold": k, "inner_score": score,
                              **describe(classifier, fold_params)})
            model = fit_pipeline(classifier, fold_params, X[train], row_y[train], seed, genres=list(genres))
            clips, proba = clip_proba(model, X[test], clip_ids[test], n_genres)
            oof[r, clips] = proba
            truth, pred = y[clips], np.argmax(proba, axis=1)
            accuracy.append(float(np.mean(truth == pred)))
            f1_macro.append(float(f1_score(truth, pred, average="macro", zero_division=0)))
            p, rc, f, _ = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=np.nan)
            prf.append(np.stack([p, rc, f]))
            confusion += confusion_matrix(truth, pred, labels=labels)
            if progress is not None:
                progress(r, k, accuracy[-1])
    return CvResult(genres=list(genres), classifier=describe(classifier, params), y=y, folds=folds, oof_proba=oof,
                    fold_accuracy=np.array(accuracy), fold_f1_macro=np.array(f1_macro),
                    fold_prf=np.array(prf, dtype=np.float64), confusion=confusion, tuned=tuned)


def _check_inputs(X: np.ndarray, y: np.ndarray, clip_ids: np.ndarray, folds: np.ndarray, n_genres: int) -> None:
    n_clips = len(y)
    if X.ndim != 2 or len(X) != len(clip_ids):
        raise DataError(f"X must be [shape=(n_rows, n_features)] with one row per clip_ids entry; got X {X.shape}, "
                        f"clip_ids {clip_ids.shape}.")
    if folds.shape[1] != n_clips:
        raise DataError(f"folds_per_clip covers {folds.shape[1]} clips, y {n_clips}.")
    if len(clip_ids) and (clip_ids.min() < 0 or clip_ids.max() >= n_clips):
        raise DataError(f"clip_ids must lie in [0, {n_clips}).")
    empty = np.flatnonzero(np.bincount(clip_ids, minlength=n_clips) == 0)
    if len(empty):
        raise DataError(f"{len(empty)} clip(s) have no rows (first: clip {int(empty[0])}).")
    if n_clips and (y.min() < 0 or y.max() >= n_genres):
        raise DataError(f"labels must lie in [0, {n_genres}) (one per genre).")
    if (folds < 0).any():
        raise DataError("Every clip needs a fold (folds_per_clip holds a negative value).")


def _clean(value: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, recursively: json.dumps(allow_nan=False) works."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def cv_metrics_json(result: CvResult, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The content of cv_metrics.json. ``confusion_matrix`` counts each clip once per repeat."""
    return _clean({
        "accuracy_mean": float(result.fold_accuracy.mean()),
        "accuracy_std": float(result.fold_accuracy.std()),
        "f1_macro_mean": float(result.fold_f1_macro.mean()),
        "f1_macro_std": float(result.fold_f1_macro.std()),
        "fold_accuracy": result.fold_accuracy,
        "fold_f1_macro": result.fold_f1_macro,
        "folds": result.n_folds,
        "repeats": result.n_repeats,
        "n_clips": len(result.y),
        "per_genre": result.per_genre(),
        "confusion_matrix": result.confusion,
        "labels": result.genres,
        **result.classifier,
        "tuned_params": result.tuned or None,
        "settings": dict(settings),
    })
