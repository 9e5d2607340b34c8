"""gradc's tests: one folder per package of ``gradc/`` (``tests/frontend/`` tests
``gradc/frontend/``, ...), the top-level modules' tests here, whole-system tests (examples,
docs, packaging) in ``tests/system/``, and the code they share in ``tests/harness/``."""
