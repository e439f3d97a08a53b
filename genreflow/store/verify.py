"""``genreflow verify``: read every shard of a store in full and move the damaged ones aside."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Mapping

from genreflow.core.fs import exists, list_files, remove_stale_temps_tree
from genreflow.core.layout import Layout
from genreflow.store.featureset import FeatureSet, Kind, list_feature_sets, make_command, open_feature_set
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
        bad = f", {len(self.quarantined)} damaged shard(s) moved to {QUARANTINE}/" if self.quarantined else ""
        old = f", {self.already_quarantined} shard(s) in {QUARANTINE}/ from earlier" if self.already_quarantined else ""
        return f"{self.kind} {self.fingerprint}: {self.shards} shard(s), {self.rows} row(s) verified{bad}{old}"


@dataclass
class StoreReport:
    """Result of ``verify_store``: one check per feature set, plus what was skipped."""

    data_dir: str
    feature_sets: list[FeatureSetCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
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
        out += [f"  moved {issue.shard} -> {issue.moved_to}: {issue.reason}" for issue in self.quarantined]
        out += [f"skipped {note}" for note in self.skipped]
        if self.temps_removed:
            out.append(f"removed {self.temps_removed} temp file(s) left by killed runs")
        if self.ok:
            out.append("store OK")
        else:
            kinds = sorted({check.kind for check in self.feature_sets if check.quarantined})
            commands = " and ".join(f"`{make_command(kind, self.data_dir)}`" for kind in kinds)
            out.append(f"{len(self.quarantined)} damaged shard(s) quarantined: run {commands} to recompute their rows")
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
        try:
            entries = list_feature_sets(data_dir, kind_dir.base_name)
        except ValueError as exc:  # a damaged _params.json
            report.skipped.append(f"{kind_dir.path}: {exc}")
            continue
        kind = kinds.get(kind_dir.base_name)
        for entry in entries:
            if kind is None:
                report.skipped.append(f"{kind_dir.path}/{entry['fingerprint']}: {kind_dir.base_name!r} is not a "
                                      f"feature kind of this genreflow (it has {', '.join(kinds)})")
                continue
            fset = open_feature_set(data_dir, kind, entry["fingerprint"])
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
