"""Where the work runs: a Dask scheduler's address, or a LocalCluster of N processes.

``open_cluster(spec)`` is the one way gradc.dask gets a :class:`distributed.Client`:

* ``"local:N"`` starts a LocalCluster of N worker processes with one thread each (closed
  again on exit; its workers log errors only: failures reach the user as gradc messages),
  each with its share of the cores as its thread budget (:func:`worker_env`);
* ``"tcp://host:port"`` (or ``tls://``, ``ws://``, ...) connects to a running scheduler
  (``dask scheduler``, dask-jobqueue, Kubernetes, Coiled); it is not closed on exit;
* a ``distributed.Client`` is used as it is.

Every wait has a timeout: a scheduler that does not answer within ``timeout`` seconds, or
a cluster with no worker after ``timeout`` seconds, is a :class:`GradcError` naming the
address, never a hang.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from contextlib import contextmanager
from urllib.parse import urlsplit

from gradc.codegen.threads import _usable_cores
from gradc.errors import GradcError

CONNECT_TIMEOUT = 5.0   # seconds to reach a scheduler
WORKERS_TIMEOUT = 60.0  # seconds for the first worker to show up
_LOCAL = re.compile(r"local(?::(\d+))?")


def require_dask():
    """Import ``distributed``; a GradcError with the install line when it is missing."""
    try:
        import distributed
    except ImportError:
        raise GradcError("scale-out needs Dask: pip install 'gradc[dask]' "
                         "(dask[distributed])") from None
    return distributed


def parse(spec: str) -> tuple[str, int | str]:
    """``"local:N"`` -> ``("local", N)``; a scheduler address -> ``("address", spec)``.

    Raises:
        GradcError: neither form (the message names ``--cluster``).
    """
    m = _LOCAL.fullmatch(spec.strip())
    if m:
        n = int(m.group(1) or 2)
        if n < 1:
            raise GradcError(f"--cluster {spec}: a local cluster needs at least 1 worker")
        return "local", n
    parts = urlsplit(spec.strip())
    if parts.scheme and parts.hostname and parts.port:
        return "address", spec.strip()
    raise GradcError(f"--cluster {spec!r}: expected local:N (N worker processes here) or a "
                     f"Dask scheduler address such as tcp://host:8786")


def check(spec: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast (before compiling anything) on a malformed ``spec`` or a tcp address
    where nothing listens; :func:`open_cluster` does the real connection."""
    kind, value = parse(spec)
    if kind == "address":
        _reachable(value, timeout)


def _reachable(address: str, timeout: float) -> None:
    """Fail fast with a clear message when nothing listens at a tcp address."""
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as e:
        raise GradcError(f"--cluster {address}: no Dask scheduler answers there "
                         f"({e.strerror or type(e).__name__}, waited at most {timeout:g} s); "
                         f"start one with 'dask scheduler', or use local:N") from None


def connect(address: str, timeout: float = CONNECT_TIMEOUT):
    """A Client of the scheduler at ``address``, reached within ``timeout`` seconds."""
    distributed = require_dask()
    _reachable(address, timeout)
    try:
        return distributed.Client(address, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - anything here means: not a usable scheduler
        raise GradcError(f"--cluster {address}: cannot connect to a Dask scheduler there "
                         f"within {timeout:g} s ({type(e).__name__}: {e})") from None


@contextmanager
def open_cluster(spec, timeout: float = CONNECT_TIMEOUT, workers_timeout: float =
                 WORKERS_TIMEOUT):
    """Yield a Client for ``spec`` (see the module docstring) with at least one worker;
    close what was opened here on exit."""
    distributed = require_dask()
    if isinstance(spec, distributed.Client):
        yield spec
        return
    kind, value = parse(str(spec))
    cluster = None
    if kind == "local":
        cluster = distributed.LocalCluster(n_workers=value, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR,
                                           env=worker_env(value))
        client = distributed.Client(cluster)
    else:
        client = connect(value, timeout)
    try:
        try:
            client.wait_for_workers(1, timeout=workers_timeout)
        except TimeoutError:
            raise GradcError(f"--cluster {spec}: the scheduler has no worker after "
                             f"{workers_timeout:g} s") from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def worker_env(workers: int, environ=os.environ) -> dict[str, str]:
    """The environment of the ``workers`` processes of a local cluster: each its share of
    the cores this process may use (``GRADC_NUM_THREADS``, at least 1), unless
    GRADC_NUM_THREADS is set here already (``--threads``), which they then inherit."""
    if environ.get("GRADC_NUM_THREADS", "").strip():
        return {}
    return {"GRADC_NUM_THREADS": str(max(1, _usable_cores({}) // workers))}


def alive_workers(client) -> list[str]:
    """The addresses of the workers the scheduler knows now, sorted."""
    return sorted(client.scheduler_info(n_workers=-1)["workers"])

