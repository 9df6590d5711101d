"""The checker: reads every worker's history and the parent's fault log.

Invariant (per process, SPEC §5): let a *floor* of an entry in process P be set when
one of P's own calls that replaces or invalidates the entry *returns*:

- ``write+set`` / ``write+invalidate`` of row i to version v: floor v for both entries;
- ``invalidate`` of the item entry, ``invalidate_pattern``/``invalidate_namespace``
  covering it, or ``invalidate_tags`` of its group: floor = the newest version of the
  row whose database write had completed when the call *started* (what the cache could
  have held then).

A read (``get``, ``get_or_set``, decorated call) by P that *starts* after that return
must yield a miss or a version >= the floor. Reads that overlap the call are not
constrained, nor are values written by other processes (their ordering is theirs).
"""

from __future__ import annotations

import bisect
import statistics
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.soak import layout as L
from benchmarks.soak.chaos import Fault

PHASES = ("healthy", "outage", "failback")


@dataclass
class Columns:
    kind: array[int]
    row: array[int]
    t0: array[float]
    t1: array[float]
    bumped: array[float]
    version: array[int]
    arg: array[int]
    bump_row: array[int]
    bump_version: array[int]
    bump_time: array[float]

    @classmethod
    def load(cls, raw: dict[str, bytes]) -> Columns:
        def col(code: str, name: str) -> array[Any]:
            out = array(code)
            out.frombytes(raw[name])
            return out

        return cls(
            col("B", "kind"),
            col("l", "row"),
            col("d", "t0"),
            col("d", "t1"),
            col("d", "bumped"),
            col("q", "version"),
            col("l", "arg"),
            col("l", "bump_row"),
            col("q", "bump_version"),
            col("d", "bump_time"),
        )


@dataclass
class Violation:
    worker: int
    what: str

    def __str__(self) -> str:
        return f"worker {self.worker}: {self.what}"


@dataclass
class Report:
    operations: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    reads: int = 0
    misses: int = 0
    stale_reads: int = 0
    stale_by_phase: dict[str, int] = field(default_factory=dict)
    staleness: list[float] = field(default_factory=list)
    stale_bound: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=dict)
    rss: list[dict[str, float]] = field(default_factory=list)
    transitions: dict[str, int] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Database:
    """When each version of each row became readable, rebuilt from the owners' writes."""

    def __init__(self, keys: int) -> None:
        self.times: list[list[float]] = [[] for _ in range(keys)]
        self.versions: list[list[int]] = [[] for _ in range(keys)]

    def add(self, row: int, version: int, bumped: float) -> None:
        self.times[row].append(bumped)
        self.versions[row].append(version)

    def sort(self) -> None:
        for row, times in enumerate(self.times):
            pairs = sorted(zip(times, self.versions[row], strict=True))
            self.times[row] = [t for t, _ in pairs]
            self.versions[row] = [v for _, v in pairs]

    def version_at(self, row: int, t: float) -> int:
        """The newest version whose write had completed before ``t`` (0: never written)."""
        index = bisect.bisect_left(self.times[row], t)
        return self.versions[row][index - 1] if index else 0

    def superseded_at(self, row: int, version: int) -> float | None:
        """When ``version + 1`` was written, if it was."""
        index = bisect.bisect_right(self.versions[row], version)
        return self.times[row][index] if index < len(self.times[row]) else None


def phase_of(worker: int, t: float, faults: Sequence[Fault], failback_window: float) -> str:
    phase = "healthy"
    for fault in faults:
        if worker not in fault.workers:
            continue
        if fault.start <= t <= fault.end:
            return "outage"
        if fault.end < t <= fault.end + failback_window:
            phase = "failback"
    return phase


def covered_rows(kind: int, row: int, arg: int, keys: int) -> tuple[list[int], list[int]]:
    """Rows whose item entry, and rows whose dec entry, an invalidation covers."""
    if kind == L.INVALIDATE:
        return [row], []
    if kind == L.INVALIDATE_PATTERN:
        return [i for i in range(keys) if L.pattern_covers(arg, i)], []
    if kind == L.INVALIDATE_NAMESPACE:
        if arg == L.DEC_NAMESPACE_CODE:
            return [], list(range(keys))
        return list(range(arg, keys, L.NAMESPACES)), []
    if kind == L.INVALIDATE_TAGS:
        rows = list(range(arg * L.GROUP_SIZE, min(keys, (arg + 1) * L.GROUP_SIZE)))
        return rows, rows
    return [], []


def check(
    settings: L.Settings, results: Sequence[dict[str, Any]], faults: Sequence[Fault]
) -> Report:
    report = Report(latency={p: [] for p in PHASES}, stale_by_phase=dict.fromkeys(PHASES, 0))
    keys = settings.keys
    histories = {r["wid"]: Columns.load(r["columns"]) for r in results}
    longest = max((f.end - f.start for f in faults), default=0.0)
    # A partitioned owner's writes stay in its memory until its failback replays them;
    # an entry loaded from memory lives at most the cap: what bounds disagreement.
    report.stale_bound = (
        max(settings.outage_ttl_cap, longest + settings.probe_max_interval)
        + 4 * settings.operation_timeout
        + 1.0
    )
    failback_window = settings.probe_max_interval + 1.0

    db = Database(keys)
    for h in histories.values():
        for n, row in enumerate(h.bump_row):
            db.add(row, h.bump_version[n], h.bump_time[n])
    db.sort()

    for result in results:
        wid = result["wid"]
        h = histories[wid]
        for name, count in result["errors"].items():
            report.errors[name] = report.errors.get(name, 0) + count
        if result["fatal"]:
            report.violations.append(Violation(wid, "worker failed:\n" + result["fatal"]))
        for _, event in result["transitions"]:
            report.transitions[event] = report.transitions.get(event, 0) + 1
        _check_worker(wid, h, db, settings, faults, failback_window, report)
        samples = [b for _, b in result["rss"]]
        if samples:
            warm = samples[min(len(samples) - 1, len(samples) // 10)]
            peak = max(samples)
            report.rss.append(
                {
                    "worker": wid,
                    "warm_mb": warm / 2**20,
                    "peak_mb": peak / 2**20,
                    "last_mb": samples[-1] / 2**20,
                }
            )
            if peak / 2**20 > settings.rss_limit_mb:
                report.violations.append(
                    Violation(
                        wid, f"RSS peaked at {peak / 2**20:.0f} MB > {settings.rss_limit_mb} MB"
                    )
                )
    if report.errors:
        report.violations.append(Violation(-1, f"exceptions reached callers: {report.errors}"))
    over = [s for s in report.staleness if s > report.stale_bound]
    if over:
        report.violations.append(
            Violation(
                -1,
                f"{len(over)} cross-process stale reads older than the bound "
                f"{report.stale_bound:.2f} s (max {max(over):.2f} s)",
            )
        )
    return report


def _check_worker(
    wid: int,
    h: Columns,
    db: Database,
    settings: L.Settings,
    faults: Sequence[Fault],
    failback_window: float,
    report: Report,
) -> None:
    keys = settings.keys
    # Floors of item entries are at index row, of dec entries at keys + row.
    floor = [0] * (2 * keys)
    source: list[int] = [-1] * (2 * keys)
    # Floors take effect when their call returns, reads are judged when they start:
    # one sweep over both, a read before a floor at the same instant (the strict reading).
    events: list[tuple[float, int, int]] = []
    for n, kind in enumerate(h.kind):
        if h.version[n] == L.FAILED:
            continue
        if kind in L.READS:
            events.append((h.t0[n], 0, n))
        else:
            events.append((h.t1[n], 1, n))
    events.sort()
    for _, is_floor, n in events:
        kind, row = h.kind[n], h.row[n]
        if is_floor:
            if kind in (L.WRITE_SET, L.WRITE_INVALIDATE):
                for entry in (row, keys + row):
                    if h.version[n] > floor[entry]:
                        floor[entry], source[entry] = h.version[n], n
                continue
            items, decs = covered_rows(kind, row, h.arg[n], keys)
            for rows, offset in ((items, 0), (decs, keys)):
                for i in rows:
                    v = db.version_at(i, h.t0[n])
                    if v > floor[offset + i]:
                        floor[offset + i], source[offset + i] = v, n
            continue
        got = h.version[n]
        entry = keys + row if kind == L.DECORATED else row
        if got != L.MISS and got < floor[entry]:
            s = source[entry]
            report.violations.append(
                Violation(
                    wid,
                    f"{L.OP_NAMES[kind]} of row {row} started at {h.t0[n]:.6f} read version "
                    f"{got}, but this process's {L.OP_NAMES[h.kind[s]]} (row {h.row[s]}, "
                    f"{h.t0[s]:.6f}..{h.t1[s]:.6f}) had set the floor to {floor[entry]}",
                )
            )

    for n, kind in enumerate(h.kind):
        name = L.OP_NAMES[kind]
        report.operations[name] = report.operations.get(name, 0) + 1
        phase = phase_of(wid, h.t0[n], faults, failback_window)
        report.latency[phase].append(h.t1[n] - h.t0[n])
        if kind not in L.READS or h.version[n] == L.FAILED:
            continue
        report.reads += 1
        got = h.version[n]
        if got == L.MISS:
            report.misses += 1
            continue
        newer = db.superseded_at(h.row[n], got)
        if newer is not None and newer < h.t0[n]:
            report.stale_reads += 1
            report.stale_by_phase[phase] += 1
            report.staleness.append(h.t0[n] - newer)


def summary(report: Report) -> dict[str, Any]:
    def ms(values: Sequence[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 3)

    stale = report.staleness
    return {
        "operations": report.operations,
        "total_operations": sum(report.operations.values()),
        "errors": report.errors,
        "reads": report.reads,
        "misses": report.misses,
        "stale_reads": report.stale_reads,
        "stale_by_phase": report.stale_by_phase,
        "staleness_s": {
            "p50": round(percentile(stale, 0.5), 4),
            "p99": round(percentile(stale, 0.99), 4),
            "max": round(max(stale, default=0.0), 4),
            "mean": round(statistics.fmean(stale), 4) if stale else 0.0,
            "bound": round(report.stale_bound, 3),
        },
        "latency_ms": {
            phase: {
                "ops": len(values),
                "p50": ms(values, 0.5),
                "p99": ms(values, 0.99),
                "max": round(max(values, default=0.0) * 1000, 3),
            }
            for phase, values in report.latency.items()
        },
        "rss_mb": [{k: round(v, 1) for k, v in r.items()} for r in report.rss],
        "transitions": report.transitions,
        "violations": len(report.violations),
    }
