"""Scale-out on Dask: data-parallel training and hyper-parameter sweeps (``gradc[dask]``).

* :func:`fit` (:mod:`gradc.dask.fit`): synchronous data-parallel training of one model on
  data that stays on the workers; equal to single-process training with the same seed.
* :func:`sweep` (:mod:`gradc.dask.sweep`): independent trainings of a grid of settings,
  spread over the workers; the compiled model is shipped once.
* :func:`open_cluster` (:mod:`gradc.dask.cluster`): a client for ``local:N`` or a
  scheduler address, with a short connect timeout.

The design, the measured costs and the projections are in docs/scale-out.md.
"""

from gradc.dask.cluster import open_cluster
from gradc.dask.fit import FitResult, fit
from gradc.dask.fleet import LostWorkers
from gradc.dask.sweep import sweep

__all__ = ["FitResult", "LostWorkers", "fit", "open_cluster", "sweep"]
