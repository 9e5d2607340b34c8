"""What every fuzzer shares: outcomes, the per-input time bound, the located-error check.

An :class:`Outcome` is one input's result: ``kind`` is ``"ok"`` (the contract held: a graph,
a located error, a ``ValueError`` ...), ``"skip"`` (the input could not be judged, e.g. a
random model evaluated at a non-differentiable point) or ``"finding"`` (the contract broke);
``category`` is what the campaign counts (``graph``, ``located-error``, ``raw:IndexError``,
``timeout`` ...), ``detail`` a line for the report.
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

FILENAME = "fuzz.grad"

#: seconds of CPU time one front-end input may take: a hang or a blow-up is caught, while a
#: legitimate 243-deep fn chain (about 1 s here, more in a long CI process) is not flagged
FRONT_LIMIT = float(os.environ.get("GRADC_FUZZ_LIMIT", "5.0"))


@dataclass
class Outcome:
    kind: str  # "ok" | "skip" | "finding"
    category: str
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def finding(self) -> bool:
        return self.kind == "finding"


class Timeout(BaseException):
    """Raised inside the fuzzed call when its time bound is up (a BaseException so that a
    broad ``except Exception`` in the compiler cannot swallow it)."""


@contextmanager
def time_limit(seconds: float):
    """Bound the CPU time of the block (SIGPROF, so that a loaded machine does not turn a
    slow input into a false timeout); outside the main thread the block runs unbounded and
    the caller compares the measured time afterwards."""
    def on_alarm(signum, frame):
        raise Timeout(f"more than {seconds:g} s of CPU time")
    try:
        old = signal.signal(signal.SIGPROF, on_alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def cpu_time() -> float:
    """CPU seconds of the calling thread: a thread an earlier test left running in the same
    pytest-xdist worker (a background compile, a tier's preload) does not count."""
    return time.thread_time()


_HEAD = re.compile(r"^" + re.escape(FILENAME) + r":(\d+):(\d+): (error|warning): ", re.M)


def located_problems(err, text: str) -> list[str]:
    """What is wrong with a user error raised for ``text`` (empty when it is a proper
    located error): every error must render as ``FILE:LINE:COL: error: ...`` with the
    line inside the file and a caret line under it."""
    from gradc.errors import ErrorGroup, SourceError
    problems = []
    nlines = text.count("\n") + 1
    errors = err.errors if isinstance(err, ErrorGroup) else [err]
    if isinstance(err, ErrorGroup) and not err.errors:
        problems.append("an ErrorGroup without errors")
    for e in errors:
        if not isinstance(e, SourceError):
            problems.append(f"a plain {type(e).__name__} without a location: {str(e)[:120]!r}")
            continue
        if e.severity != "error":
            continue
        if e.span is None:
            problems.append(f"an error without a line: {e.message[:120]!r}")
            continue
        if not (1 <= e.span.line <= nlines and e.span.col >= 1):
            problems.append(f"span {e.span} outside the text ({nlines} lines): "
                            f"{e.message[:120]!r}")
            continue
        rendered = e.render()
        m = _HEAD.match(rendered)
        if not m or "^" not in rendered.split("\n", 2)[-1]:
            problems.append(f"rendered without FILE:LINE:COL and a caret: {rendered[:160]!r}")
    if not problems:
        full = str(err)
        if not _HEAD.search(full) or "^" not in full:
            problems.append(f"str() has no FILE:LINE:COL and caret: {full[:160]!r}")
    return problems


def short(exc: BaseException) -> str:
    """``Type: first line`` of an exception, with the innermost frame of gradc."""
    import traceback
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "/gradc/" in frame.filename:
            where = f" [{frame.filename.split('/gradc/', 1)[1]}:{frame.lineno} {frame.name}]"
            break
    first = str(exc).strip().split("\n", 1)[0][:160]
    inner = re.search(r"NameError: name '\w+' is not defined", str(exc))
    if inner and inner.group(0) not in first:  # Numba wraps it in a TypingError
        first += f" ({inner.group(0)})"
    return f"{type(exc).__name__}: {first}{where}"


def check_front(text: str, options: dict | None = None, limit: float = FRONT_LIMIT) -> Outcome:
    """The front-end property: ``front`` returns a graph or raises a located user error,
    within ``limit`` seconds of CPU time."""
    from gradc.errors import GradcError
    from gradc.options import Options
    from gradc.pipeline import front
    from gradc.source import Source
    start = cpu_time()
    try:
        with time_limit(limit):
            opts = Options.make(**(options or {}))
            graph, warnings = front(Source(text, FILENAME), opts)
    except Timeout:
        return Outcome("finding", "timeout", f"no answer within {limit:g} s of CPU time")
    except GradcError as e:
        spent = cpu_time() - start
        if spent > limit * 1.5:
            return Outcome("finding", "timeout", f"a located error after {spent:.1f} s")
        problems = located_problems(e, text)
        if problems:
            return Outcome("finding", "unlocated-error", "; ".join(problems[:3]))
        return Outcome("ok", "located-error", str(e).split("\n", 1)[0][:160])
    except RecursionError as e:
        return Outcome("finding", "raw:RecursionError", short(e))
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        return Outcome("finding", f"raw:{type(e).__name__}", short(e))
    spent = cpu_time() - start
    if spent > limit * 1.5:
        return Outcome("finding", "timeout", f"a graph after {spent:.1f} s")
    for w in warnings:
        try:
            w.render()
        except Exception as e:  # noqa: BLE001
            return Outcome("finding", "bad-warning", short(e))
    return Outcome("ok", "graph", f"{len(graph.nodes) if hasattr(graph, 'nodes') else '?'} nodes")
