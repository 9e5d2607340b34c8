"""``gradc sweep MODEL.grad --data D.npz --grid lr=0.1,0.01 batch_size=32,128``: a
hyper-parameter sweep, one independent ``gradc train`` per setting, spread over the
workers of a Dask cluster (``--cluster``; default: a local cluster of up to one process
per CPU). Writes results.csv, sweep.png and best_params.npz into ``--out``. See
docs/scale-out.md; the work is :func:`gradc.dask.sweep`.
"""

from __future__ import annotations

from gradc.commands._options import add_training_options


def register(subparsers) -> None:
    """Add the ``sweep`` subparser."""
    p = subparsers.add_parser(
        "sweep", help="train once per setting of a grid, spread over a Dask cluster",
        description="Train MODEL.grad on DATA.npz once for every combination of the --grid "
                    "values (lr, batch_size, epochs, seed, optimizer), each trial a "
                    "single-process gradc train on one worker. Prints one line per trial "
                    "and the best setting (lowest final validation loss); writes "
                    "results.csv, sweep.png and best_params.npz into --out.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--data", required=True, metavar="DATA.npz",
                   help="the data: one array per model input (read on the workers)")
    p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                   help="the values to try, e.g. lr=0.1,0.01 batch_size=32,128")
    p.add_argument("--cluster", metavar="ADDRESS|local:N",
                   help="a Dask scheduler address or local:N (default: local, one worker "
                        "process per CPU, at most one per trial)")
    add_training_options(p, unless=" unless the grid sets it")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="give up when no trial finishes for S seconds (default 600)")
    p.add_argument("--out", default="sweep", metavar="DIR",
                   help="where to write the results (default ./sweep)")
    p.set_defaults(run=run)


def run(args) -> int:
    """Run the sweep; return the exit code."""
    from gradc.commands._cluster import sweep

    return sweep(args)
