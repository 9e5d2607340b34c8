"""The gradc performance suite: ``python -m benchmarks`` (see ``benchmarks/README.md``)."""

import os

# Benchmarks time the compiled kernels: blocking compiles unless one asks for tiers
# (benchmarks.first_result sets GRADC_TIERED for each process it starts).
os.environ.setdefault("GRADC_TIERED", "0")
