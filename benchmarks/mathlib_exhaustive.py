"""Exhaustive float32 check of gradc.codegen.cpu.mathlib: all 2^32 inputs of every float32
function, with and without fastmath, against the float64 libm result.

Too slow for the test suite (about 30 minutes on 2 cores); the suite checks dense grids,
random samples and special values instead. Run it after changing a float32 function:

    python benchmarks/mathlib_exhaustive.py [OP ...]

Exits 1 if any function exceeds its bound in ``mathlib.ERROR_BOUNDS``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_mathlib import OPS, _exhaustive_scanner, _fn  # noqa: E402

from gradc.codegen.cpu import mathlib  # noqa: E402


def main(ops: list[str]) -> int:
    """Scan every requested op in both fastmath modes; print one line each."""
    failed = 0
    for op in ops or OPS:
        for fastmath in (True, False):
            err, where = _exhaustive_scanner(op, fastmath)(256)
            bound = mathlib.ERROR_BOUNDS[_fn(op, "float32").__name__]
            x = np.uint32(where).view(np.float32)
            ok = err <= bound
            failed += not ok
            print(f"{op:8s} fastmath={fastmath!s:5s} max error {err:.3g} at x={x!r} "
                  f"(bound {bound:g}) {'ok' if ok else 'FAIL'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
