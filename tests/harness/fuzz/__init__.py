"""gradc's fuzz suite (issue "Hardening and polish", its last section, and issue 13).

Four fuzzers, each a module with a seeded generator (every input is rebuilt from a name and
a seed) and a property:

* :mod:`.texts` — model texts (grammar-aware generation, mutation of ``examples/*.grad``
  and of random models, and the constructs the hardening issues found broken); property:
  ``gradc.pipeline.front`` returns a graph or raises a ``GradcError`` whose every error
  renders as ``FILE:LINE:COL`` with a caret, within 2 s of CPU time (:mod:`.common`).
* :mod:`.options` — compile-option combinations; property: a Model or a ``GradcError``,
  never another exception, and never a cached module that cannot be imported.
* :mod:`.models` — random well-typed models and their PyTorch twins; property: float64
  forward, loss, gradients, vjp, jvp and hvp agree with PyTorch, and the gradient with
  central differences (away from non-differentiable points).
* :mod:`.misuse` — the call-time misuse table over every entry, in subprocesses; property:
  ``ValueError`` (``MemoryError`` for a huge batch), never a crash or another exception.

Findings that are known and not fixed yet are listed, with a minimal reproduction, in
:mod:`.known`: they are counted, not failed, and ``tests/system/test_known_findings.py``
keeps each as a strict xfail.

CI runs bounded slices (``tests/frontend/test_random_texts.py``,
``tests/autodiff/test_random_models.py``, ``tests/test_random_options.py``,
``tests/codegen/test_random_misuse.py``; ``GRADC_FUZZ_SCALE=N`` multiplies them).
A longer campaign, from the repository root::

    python -m tests.harness.fuzz --minutes 15    # outcome counts by category, new findings
    python -m tests.harness.fuzz --repro text:mutate:17  # rebuild and rerun one input

(the campaign runs in a temporary ``GRADC_CACHE_DIR`` unless one is set, and exits 1 when it
met a new finding).
"""
