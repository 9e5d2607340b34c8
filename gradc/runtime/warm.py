"""The background compile of :mod:`gradc.runtime.tiers`: one process per entry group.

``python -m gradc.runtime.warm MODULE.py MODULE_NAME PARENT_PID ENTRY...`` imports the generated
CPU module (under the name the parent uses, so that Numba's cache keys agree), calls
each entry once on tiny arrays of the declared dtypes, C-contiguous, with every symbolic
dim 2 (the argument types of every real call: the generated functions validate and
convert the same way), so that Numba compiles its kernels and writes them to its on-disk
cache, and marks each entry ready in the cache folder as soon as it is compiled (in the
order given); it exits 0 when all are. It holds a lock on
each kernel it compiles (:func:`locked`): another process compiling one of them waits
its turn. It runs at a lower priority than the process that trains: the parent adds
:data:`NICE` to its niceness as soon as it has started it. Any failure is a traceback
on stderr and exit status 1 (the parent then keeps those entries on the NumPy tier).

The process that started it (PARENT_PID) may exit first: a normal exit lets the compile
finish, so that the next run finds the kernels in the cache, but for at most
:data:`ORPHAN_LIMIT_S` seconds after that exit (:func:`bound`); then it ends itself with
status :data:`EXIT_BOUND`. Killing it at any point is safe: Numba and gradc write every
cache file atomically (temp file + rename). A Ctrl-C in the parent ends it at once
(:mod:`gradc.runtime.tiers` kills its process group).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from gradc.dtypes import numpy_dtype

#: the public functions a background compile of an entry calls (jacobian runs forward
#: and one of jvp and vjp, whichever the shapes make cheaper: both are compiled)
CALLS = {"jacobian": ("forward", "jvp", "vjp")}
#: the value given for each required argument after ``params``
ARGUMENTS = {"lr": 0.0, "tangents": {}, "cotangents": {}, "vector": {}}
DIM = 2  # the size of every symbolic dim in the dummy call
NICE = 5  # added to the niceness: the process that trains keeps the CPU it needs
#: how long a compile may go on after the process that started it exited (3 minutes: the
#: examples' longest compiles, the cnn's entries, take well under one each on 2 cores)
ORPHAN_LIMIT_S = 180.0
EXIT_BOUND = 124  # the exit status of a compile that ran past ORPHAN_LIMIT_S


def calls(entry: str) -> tuple[str, ...]:
    """The public functions whose kernels ``entry`` runs."""
    return CALLS.get(entry, (entry,))


def kernels(entry: str) -> set[str]:
    """The kernels a background compile of ``entry`` may write to Numba's cache: its own
    and those of the programs of the public functions it calls (jacobian: forward's, jvp's
    and vjp's; train_epoch: train_step's, which a large step's epoch loop calls)."""
    from gradc.entries import ENTRIES

    return {entry} | {p for fn in calls(entry) for p in ENTRIES[fn].programs}


@contextlib.contextmanager
def locked(folder: Path, names):
    """Hold an exclusive lock on ``folder/.lock_NAME`` for each of ``names`` (in sorted
    order: no deadlock), so that two processes never compile one kernel at once; no lock
    where the folder cannot be written or there is no ``fcntl``."""
    with contextlib.ExitStack() as stack:
        try:
            import fcntl
            for name in sorted(names):
                f = stack.enter_context(open(folder / f".lock_{name}", "a"))
                fcntl.flock(f, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield


def dummy_inputs(signature: dict) -> dict:
    """Inputs of the declared dtypes and shapes (symbolic dims :data:`DIM`): 0 for
    integers (a valid label and index), 0.5 for floats."""
    return {name: np.full([d if isinstance(d, int) else DIM for d in shape],
                          0 if dtype[0] == "i" else 0.5, numpy_dtype(dtype))
            for name, (dtype, shape) in signature["inputs"].items()}


def compile_entry(module, name: str) -> None:
    """Call the public function ``name`` of ``module`` once on dummy arguments (its
    required arguments from :data:`ARGUMENTS`; train_epoch in minibatches of 1)."""
    from gradc.entries import ENTRIES

    kwargs = {p: ARGUMENTS[p] for p, required in ENTRIES[name].arguments() if required}
    if name == "train_epoch":
        kwargs["batch_size"] = 1
    getattr(module, name)(module.init_params(0), state={}, **kwargs,
                          **dummy_inputs(module.SIGNATURE))


def bound(parent: int, limit: float = ORPHAN_LIMIT_S, every: float = 0.25) -> threading.Thread:
    """End this process ``limit`` seconds after the process ``parent`` exits.

    A daemon thread looks every ``every`` seconds whether ``parent`` is still this
    process's parent (when it exits, the process is handed to another: init or a
    subreaper), and from then on gives the compile ``limit`` seconds before it ends the
    process with :data:`EXIT_BOUND` (``os._exit``: no clean-up runs; every cache file is
    written atomically, so none is left half-written). The thread gets its turn during
    Numba's long LLVM calls too: llvmlite calls LLVM through ctypes, which releases the
    GIL."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        time.sleep(limit)
        os._exit(EXIT_BOUND)

    thread = threading.Thread(target=watch, name="gradc-orphan-bound", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    """Compile the entries ``argv[3:]`` of the module at ``argv[0]`` named ``argv[1]``,
    for the process ``argv[2]`` (see :func:`bound`)."""
    from gradc.runtime.cache import mark_ready
    from gradc.runtime.loader import load_module

    path, name, parent, entries = Path(argv[0]), argv[1], int(argv[2]), argv[3:]
    bound(parent)
    with locked(path.parent, set().union(*(kernels(e) for e in entries))):
        module = load_module(path, name)
        for entry in entries:
            for fn in calls(entry):
                compile_entry(module, fn)
            mark_ready(path, [entry])  # the parent may switch it before the next one
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
