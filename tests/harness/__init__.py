"""The code the tests share (test modules import only from here and from gradc):

* :mod:`.paths` — the checkout's folders; :mod:`.seeds` — the one seed of random draws;
* :mod:`.oracles` — finite differences and the reference interpreter as gradient oracles;
  :mod:`.op_specs` — the op table's rows and groups;
* :mod:`.agreement` — comparing a target with the CPU target, group by group, in worker
  subprocesses (:mod:`.cuda_sim`, :mod:`.numpy_agreement`);
* :mod:`.cli` — ``python -m gradc`` as a user runs it; :mod:`.models`, :mod:`.data` — tiny
  models and synthetic data sets;
* :mod:`.fuzz` — the fuzzers' generators and properties (CI slices in the tests,
  ``python -m tests.harness.fuzz`` for long campaigns).
"""
