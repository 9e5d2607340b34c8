"""Findings of the fuzzers that are not fixed yet: each with a minimal reproduction.

A fuzz outcome that matches a known finding (``category``, ``detail``) is counted under
``known:<id>`` and does not fail the CI slice; ``tests/test_fuzz_known.py`` runs every
reproduction as a strict xfail, so that the fix of one makes its test XPASS (fail) and the
entry is then deleted here. Any other finding fails the slice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    id: str
    title: str
    pattern: str   # a regex searched in "CATEGORY DETAIL"
    repro: str     # Python code that raises AssertionError (or the raw exception) while unfixed
    where: str = ""


KNOWN: list[Known] = [
    Known("transpose-int-perm-unlocated",
          "transpose(a, 4) (an integer where the permutation tuple goes) is an error without "
          "a line or caret: 'FILE: error: expected an integer here'",
          r"unlocated-error an error without a line: 'expected an integer here'",
          "from tests.fuzz.common import check_front\n"
          "o = check_front('input x : f64[3, 4]\\noutput o = transpose(x, 4)\\n')\n"
          "assert not o.finding, o.detail",
          "gradc/ir/builtins.py _transpose (the error is raised without the call's span)"),
    Known("hvp-labels-unchecked",
          "hvp does not range-check integer labels when its program never reads them (the "
          "Hessian of a cross-entropy does not depend on the labels, so no kernel loads them "
          "and nothing is read out of bounds); loss_and_grad does check them",
          r"misuse:(accepted|raw:IndexError) (label:)?hvp/(y|k)-",
          "import numpy as np, gradc\n"
          "m = gradc.compile_string('input x : f64[B, 3]\\ninput y : i64[B]\\n"
          "param W : f64[3, 4]\\nloss = cross_entropy(x @ W, y)\\n', name='known_hvp', "
          "target='numpy')\n"
          "try:\n    m.hvp({'W': np.ones((3, 4))}, {}, x=np.ones((2, 3)), y=np.array([4, -1]))\n"
          "except ValueError:\n    pass\nelse:\n    raise AssertionError('labels 4, -1 "
          "accepted')",
          "gradc/passes/entries.py _hvp (labels are checked only by the kernels that read "
          "them: Pick, Unpick, Take)"),
]

_COMPILED = [(k, re.compile(k.pattern)) for k in KNOWN]


def match(category: str, detail: str) -> Known | None:
    """The known finding this outcome is, if any."""
    text = f"{category} {detail}"
    for k, rx in _COMPILED:
        if rx.search(text):
            return k
    return None
