"""``genreflow verify``: read every shard of a store in full and move the damaged ones aside."""

from __future__ import annotations

import posixpath
import warnings
from dataclasses import dataclass, field
from typing import Mapping

from genreflow.core.fs import exists, list_files, remove_stale_temps_tree
from genreflow.core.layout import Layout
from genreflow.store.featureset import FeatureSet, Kind, ParamsWarning, list_feature_sets, make_command
from genreflow.store.integrity import QUARANTINE, ShardIssue, check_shard


@dataclass
class FeatureSetCheck:
    """What ``verify_store`` found in one fingerprint folder."""

    kind: str
    fingerprint: str
    shards: int = 0
    rows: int = 0
    quarantined: list[ShardIssue] = field(default_factory=list)
    already_quarantined: int = 0

    def line(self) -> str:
        moved = sum(1 for issue in self.quarantined if issue.moved_to)
        stuck = len(self.quarantined) - moved
        bad = f", {moved} damaged shard(s) moved to {QUARANTINE}/" if moved else ""
        bad += f", {stuck} damaged shard(s) left in place (the store is read-only)" if stuck else ""
        old = f", {self.already_quarantined} shard(s) in {QUARANTINE}/ from earlier" if self.already_quarantined else ""
        return f"{self.kind} {self.fingerprint}: {self.shards} shard(s), {self.rows} row(s) verified{bad}{old}"


@dataclass
class StoreReport:
    """Result of ``verify_store``: one check per feature set, plus what was skipped."""

    data_dir: str
    feature_sets: list[FeatureSetCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # repaired _params.json files
    temps_removed: int = 0

    @property
    def quarantined(self) -> list[ShardIssue]:
        return [issue for check in self.feature_sets for issue in check.quarantined]

    @property
    def ok(self) -> bool:
        """True when every shard read back whole (nothing was moved this time)."""
        return not self.quarantined

    def lines(self) -> list[str]:
        """The report as console lines (the `genreflow verify` output)."""
        out = [check.line() for check in self.feature_sets] or [f"feature store of {self.data_dir}: empty"]
        out += [f"  moved {issue.shard} -> {issue.moved_to}: {issue.reason}" if issue.moved_to else
                f"  damaged {issue.shard}: {issue.reason} (cannot move it to {QUARANTINE}/: read-only; its rows "
                "count as not stored)" for issue in self.quarantined]
        out += [f"skipped {note}" for note in self.skipped]
        out += [f"note: {note}" for note in self.notes]
        if self.temps_removed:
            out.append(f"removed {self.temps_removed} temp file(s) left by killed runs")
        if self.ok:
            out.append("store OK")
        else:
            kinds = sorted({check.kind for check in self.feature_sets if check.quarantined})
            commands = " and ".join(f"`{make_command(kind, self.data_dir)}`" for kind in kinds)
            stuck = any(not issue.moved_to for issue in self.quarantined)
            fix = (" (with write access to the store: `genreflow verify` moves the damaged shards aside first)"
                   if stuck else "")
            verb = "found" if stuck else "quarantined"
            out.append(f"{len(self.quarantined)} damaged shard(s) {verb}: run {commands} to recompute their rows{fix}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def verify_store(data_dir: str, kinds: Mapping[str, Kind]) -> StoreReport:
    """Read every shard of every feature set in full (checksums included) and quarantine the
    damaged ones; also removes temp files of dead writers. Safe to run beside other commands.

    ``kinds`` maps each known kind's name to its storage layout; a folder of another kind is
    reported as skipped."""
    store = Layout.of(data_dir).store
    report = StoreReport(data_dir)
    if not exists(store):
        return report
    report.temps_removed = remove_stale_temps_tree(store)
    for kind_dir in sorted(list_files(store, recursive=False), key=lambda e: e.path):
        if not kind_dir.is_dir or kind_dir.base_name.startswith((".", "_")):
            continue
        with warnings.catch_warnings(record=True) as seen:  # a damaged _params.json: repaired, noted
            warnings.simplefilter("always", ParamsWarning)
            entries = list_feature_sets(data_dir, kind_dir.base_name)
        report.notes.extend(str(w.message) for w in seen if issubclass(w.category, ParamsWarning))
        for w in seen:
            if not issubclass(w.category, ParamsWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        kind = kinds.get(kind_dir.base_name)
        for entry in entries:
            if kind is None:
                report.skipped.append(f"{kind_dir.path}/{entry['fingerprint']}: {kind_dir.base_name!r} is not a "
                                      f"feature kind of this genreflow (it has {', '.join(kinds)})")
                continue
            fp = entry["fingerprint"]  # a folder name of 16 hex digits (list_feature_sets), never a path
            params = {k: v for k, v in entry.items() if k != "fingerprint"}
            fset = FeatureSet(kind, fp, params, store.join(kind_dir.base_name, fp))
            report.feature_sets.append(_verify_feature_set(fset))
    return report


def _verify_feature_set(fset: FeatureSet) -> FeatureSetCheck:
    """Read every shard of one feature set fully; issues go into the report, not warnings."""
    check = FeatureSetCheck(fset.kind.name, fset.fingerprint)
    for path in fset.shard_paths():
        check.shards += 1
        table, issue = check_shard(fset, path, warn=False)
        if table is not None:
            check.rows += table.num_rows
        if issue is not None:
            check.quarantined.append(issue)
    folder = fset.location.join(QUARANTINE)
    moved = {posixpath.basename(issue.moved_to) for issue in check.quarantined}
    if exists(folder):
        check.already_quarantined = sum(1 for e in list_files(folder, recursive=False)
                                        if e.base_name.endswith(".parquet") and e.base_name not in moved)
    return check
