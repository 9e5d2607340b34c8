"""Timing and reporting: interleaved repeats, medians, ratios, the text table and JSON.

A *side* is one way to run a workload (gradc, a peer, the GEMM floor). Each side is set up by a
factory returning a zero-argument callable that does one unit of work (one training step, one
epoch, one forward+backward). :func:`time_sides` warms every callable up, then calls them in
interleaved rounds (A B C A B C ...) so that slow drifts of a noisy machine hit every side alike,
and keeps the per-call times measured with ``time.perf_counter_ns``.

A factory or a warm-up call that raises makes that side ``unavailable`` (or ``missing`` when the
peer's package is not installed) with the reason in its row; it never stops the run.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

#: Status values of a row.
OK, MISSING, UNAVAILABLE = "ok", "missing", "unavailable"


@dataclass
class TimingConfig:
    """How long to measure.

    Attributes:
        warmup: calls made before timing (the first includes any JIT compile); at least 3.
        min_repeats: timed calls per side, at least.
        min_time_s: timed seconds per side, at least (whichever of the two is larger).
        max_time_s: cap on the timed seconds per side for slow sides (they get fewer repeats,
            but never fewer than ``floor_repeats``).
        floor_repeats: the fewest timed calls a slow side gets.
        max_rounds: the most rounds (blocks per side) the repeats are spread over.
        settle_calls, settle_s: untimed calls at the start of every block, at least this many
            and for at least this long, so that the thread pools of the previous side's library
            (which spin for a while after their last task) calm down before timing resumes.
    """

    warmup: int = 3
    min_repeats: int = 30
    min_time_s: float = 0.5
    max_time_s: float = 6.0
    floor_repeats: int = 5
    max_rounds: int = 10
    settle_calls: int = 1
    settle_s: float = 0.005


@dataclass
class Row:
    """One line of the table: a side of a workload.

    ``ratio`` is peer median / gradc median for peers (above 1: gradc is faster), gradc median /
    floor median for the GEMM floor row, and None for gradc itself.
    """

    workload: str
    side: str
    kind: str = "peer"                 # "gradc", "peer", "floor", "abs" (target in s) or "info"
    status: str = OK
    reason: str = ""
    median_ns: float | None = None
    p25_ns: float | None = None
    p75_ns: float | None = None
    repeats: int = 0
    ratio: float | None = None
    target: str = ""                   # e.g. ">=1.3" (peer rows) or "<=1.15" (floor rows)
    passed: bool | None = None
    check: str = ""                    # correctness note, e.g. "ok 2.1e-07"
    samples_ns: list[float] = field(default_factory=list, repr=False)


@dataclass
class Side:
    """A side to time: a name, its kind and a factory making the zero-argument callable."""

    name: str
    factory: Callable[[], Callable[[], object]]
    kind: str = "peer"
    target: str = ""


def describe_error(exc: BaseException) -> tuple[str, str]:
    """Map an exception raised while setting up or warming a side to (status, reason)."""
    status = UNAVAILABLE
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in (
            "torch", "jax", "jaxlib"):
        status = MISSING
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return status, reason[:160]


def _prepare(side: Side, warmup: int) -> tuple[Callable[[], object] | None, Row, float]:
    """Build and warm one side; return (callable or None, its row, estimated seconds per call)."""
    row = Row(workload="", side=side.name, kind=side.kind, target=side.target)
    try:
        fn = side.factory()
        times = []
        for _ in range(max(3, warmup)):
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
    except Exception as exc:  # any failure of a side is reported, not raised
        row.status, row.reason = describe_error(exc)
        return None, row, 0.0
    est = statistics.median(times[1:]) * 1e-9   # the first call may include a JIT compile
    return fn, row, max(est, 1e-7)


def _plan(estimates: list[float], cfg: TimingConfig) -> tuple[int, list[int]]:
    """Choose the number of rounds and the calls each side makes per round."""
    wanted = []
    for est in estimates:
        n = max(cfg.min_repeats, math.ceil(cfg.min_time_s / est))
        if n * est > cfg.max_time_s:
            n = max(cfg.floor_repeats, int(cfg.max_time_s / est))
        wanted.append(n)
    rounds = max(1, min(cfg.max_rounds, *wanted))
    return rounds, [math.ceil(n / rounds) for n in wanted]


def _settle(fn: Callable[[], object], cfg: TimingConfig) -> None:
    """Untimed calls at the start of a block (see :class:`TimingConfig`)."""
    start = time.perf_counter()
    calls = 0
    while calls < cfg.settle_calls or time.perf_counter() - start < cfg.settle_s:
        fn()
        calls += 1


def time_sides(workload: str, sides: list[Side], cfg: TimingConfig) -> list[Row]:
    """Time every side of one workload in interleaved rounds; return one row per side.

    Each round gives every side one block: a few untimed settling calls, then its share of the
    timed calls. Blocks rather than single calls alternate because switching libraries costs
    the first call after the switch up to milliseconds (spinning thread pools of the other
    library); timing that would measure the neighbour, not the side.
    """
    prepared = [_prepare(side, cfg.warmup) for side in sides]
    live = [(fn, row, est) for fn, row, est in prepared if fn is not None]
    if live:
        rounds, per_round = _plan([est for _, _, est in live], cfg)
        plan = [(fn, row, k) for (fn, row, _), k in zip(live, per_round, strict=True)]
        clock = time.perf_counter_ns
        for _ in range(rounds):
            for fn, row, k in plan:
                samples = row.samples_ns
                if len(samples) >= cfg.floor_repeats and sum(samples) > 2e9 * cfg.max_time_s:
                    continue                    # far slower than its warm-up promised: enough
                try:
                    _settle(fn, cfg)
                    for _ in range(k):
                        t0 = clock()
                        fn()
                        samples.append(clock() - t0)
                except Exception as exc:
                    row.status, row.reason = describe_error(exc)
            plan = [item for item in plan if item[1].status == OK]
    rows = []
    for _, row, _ in prepared:
        row.workload = workload
        if row.status == OK and row.samples_ns:
            summarize(row)
        rows.append(row)
    return rows


def summarize(row: Row) -> None:
    """Fill the median, quartiles and repeat count of a row from its samples."""
    s = sorted(row.samples_ns)
    row.repeats = len(s)
    row.median_ns = statistics.median(s)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0], s[0], s[0]]
    row.p25_ns, row.p75_ns = q[0], q[2]


def apply_ratios(rows: list[Row]) -> None:
    """Set ratio and pass/fail of every row against the gradc row of the same workload."""
    gradc = next((r for r in rows if r.kind == "gradc"), None)
    base = gradc.median_ns if gradc and gradc.status == OK else None
    for row in rows:
        if row.kind == "gradc" or row.median_ns is None or base is None:
            continue
        if row.kind == "peer":
            row.ratio = row.median_ns / base
        elif row.kind == "floor":
            row.ratio = base / row.median_ns
        row.passed = meets(row.ratio, row.target)


def meets(value: float | None, target: str) -> bool | None:
    """Whether ``value`` meets a target such as ``">=1.3"`` or ``"<=1.15"``; None if no target."""
    if value is None or not target:
        return None
    if target.startswith(">="):
        return value >= float(target[2:])
    if target.startswith("<="):
        return value <= float(target[2:])
    raise ValueError(f"bad target {target!r}")


def timer_overhead_ns(n: int = 20000) -> float:
    """Median cost of one empty ``perf_counter_ns`` pair: the floor of every per-call time."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)


def fmt_time(ns: float | None) -> str:
    """Format nanoseconds with a unit: ``812 ns``, ``12.3 us``, ``4.56 ms``, ``1.23 s``."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{ns:.0f} ns"


def _ratio_cell(row: Row) -> str:
    if row.ratio is None:
        return ""
    return f"{row.ratio:.2f}x" if row.kind == "peer" else f"{row.ratio:.2f} g/f"


def _target_cell(row: Row) -> str:
    if not row.target:
        return ""
    return {"peer": f"{row.target}x", "floor": f"{row.target} g/f", "abs": f"{row.target} s"}.get(
        row.kind, row.target)


def _verdict(row: Row) -> str:
    if row.status != OK:
        return ""
    return {True: "PASS", False: "FAIL", None: ""}[row.passed]


def _spread(row: Row) -> str:
    if row.median_ns is None or row.p25_ns is None:
        return ""
    return f"+-{50 * (row.p75_ns - row.p25_ns) / row.median_ns:.0f}%"


COLUMNS = (("workload", 11), ("side", 24), ("median", 9), ("iqr/2", 6), ("n", 6),
           ("ratio", 10), ("target", 10), ("", 4), ("check", 0))


def format_table(rows: list[Row], notes: dict[str, str] | None = None) -> str:
    """Render rows as a fixed-width plain-text table; unavailable sides show their reason.

    ``notes`` maps a workload to a line printed under its group (e.g. a busy-machine warning).
    """
    notes = notes or {}
    def line(cells: list[str]) -> str:
        out = []
        for (_, width), cell in zip(COLUMNS, cells, strict=False):
            out.append(cell.ljust(width) if width else cell)
        return "  ".join(out).rstrip()

    head = line([name for name, _ in COLUMNS])
    lines = [head, "-" * max(len(head), 100)]
    last = None
    for row in rows:
        name = row.workload if row.workload != last else ""
        if last is not None and name:
            if notes.get(last):
                lines.append(" " * 13 + notes[last])
            lines.append("")
        last = row.workload
        if row.status != OK:
            lines.append(line([name, row.side, f"{row.status}: {row.reason}"]))
            continue
        lines.append(line([name, row.side, fmt_time(row.median_ns), _spread(row),
                           str(row.repeats), _ratio_cell(row), _target_cell(row),
                           _verdict(row), row.check]))
    if last is not None and notes.get(last):
        lines.append(" " * 13 + notes[last])
    return "\n".join(lines)


def rows_to_json(rows: list[Row]) -> list[dict]:
    """Rows as plain dicts for ``--json`` (samples dropped; medians in nanoseconds)."""
    out = []
    for row in rows:
        item = asdict(row)
        item.pop("samples_ns")
        out.append(item)
    return out


def _busy_jiffies() -> float | None:
    """Busy CPU time of the whole machine in seconds from /proc/stat (None where unavailable)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    busy = sum(values) - values[3] - values[4]          # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Measures how much CPU *other* processes used while a workload ran.

    ``foreign()`` is (machine busy time - this process's and its children's CPU time) divided by
    (wall time x cores): 0.0 on a quiet machine, 0.5 when other processes kept one of two cores
    busy. A high value means the numbers of that workload are unreliable.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.busy = _busy_jiffies()
        self.own = self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def foreign(self) -> float | None:
        """The other processes' share of all cores since construction (None if unknown)."""
        busy = _busy_jiffies()
        if busy is None or self.busy is None:
            return None
        wall = time.perf_counter() - self.wall
        other = (busy - self.busy) - (self._own() - self.own)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))
