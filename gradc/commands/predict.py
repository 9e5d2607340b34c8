"""``gradc predict MODEL.grad --params P.npz --data X.npz``: run trained params on new data.

Eval-mode ``forward`` (``model.forward(params, **chunk)``: batchnorm on its running
statistics, dropout off) over the samples of ``--data`` in chunks of ``--batch-size``,
with a progress bar; every output, concatenated over the chunks, is written to ``--out``
through a temporary file and a rename. The file needs the inputs ``forward`` takes; when
it also holds the inputs the loss takes, the loss is printed (the sample-weighted mean of
the chunks' losses, as ``gradc train`` evaluates), and when it holds a classifier's labels
(those of the loss, or ``--label``), the accuracy. See docs/training.md.
"""

from __future__ import annotations

import sys

import numpy as np

from gradc.commands import EXIT_OK, load_model
from gradc.commands._options import (add_label_option, add_progress_option,
                                     add_target_option, add_threads_option, percent)
from gradc.errors import GradcError
from gradc.training import checkpoint
from gradc.training.data import (batches, check_arrays, check_labels, count, fmt_shape,
                                 label_task, read_npz, sample_dim)
from gradc.training.files import replacing
from gradc.training.loop import EVAL_BATCH, progress_bar


def register(subparsers) -> None:
    """Add the ``predict`` subparser."""
    p = subparsers.add_parser(
        "predict", help="run trained params on new data: outputs, loss and accuracy",
        description="Run MODEL.grad with the params of --params on the samples of --data "
                    "(eval mode: batchnorm on its running statistics, dropout off) and "
                    "write every output to --out. Prints the loss when the file holds the "
                    "inputs the loss takes, and the accuracy when it holds a classifier's "
                    "labels.")
    p.add_argument("model", metavar="MODEL.grad", help="the model file")
    p.add_argument("--params", required=True, metavar="params.npz",
                   type=checkpoint.params_file,
                   help="the trained params (gradc train's params.npz, or its --out folder)")
    p.add_argument("--data", required=True, metavar="DATA.npz",
                   help="the samples: one array per input that forward takes, named like "
                        "it; the labels and the loss's other inputs are optional")
    p.add_argument("--out", default="preds.npz", metavar="PREDS.npz",
                   help="where to write the outputs, one array each (default preds.npz)")
    add_label_option(p)
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH, metavar="N",
                   help=f"samples per forward call (default {EVAL_BATCH})")
    add_target_option(p)
    add_progress_option(p)
    add_threads_option(p)
    p.set_defaults(run=run)


def entry_inputs(model, entry: str) -> list[str]:
    """The model inputs that ``entry`` (a program of the generated module) takes."""
    return [name for role, name in model.module._PROGRAMS[entry]["args"] if role == "input"]


def run(args) -> int:
    """Predict as the options say; return the exit code."""
    if args.batch_size < 1:
        raise GradcError(f"--batch-size must be at least 1, got {args.batch_size}")
    arrays = read_npz(args.data)        # a missing or corrupt file fails before compiling
    model = load_model(args.model, target=args.target)
    sig = model.signature
    if not model.supports("forward"):
        raise GradcError(f"{args.model}: error: model '{model.name}' declares no output: "
                         "nothing to predict")
    task = label_task(sig, args.model, args.label)
    params = checkpoint.load_params(model, args.params, "--params")
    needed = entry_inputs(model, "forward")
    if not needed:
        raise GradcError(f"{args.model}: error: model '{model.name}': forward takes no "
                         "input, so there are no samples to predict")
    data = check_arrays(args.data, arrays, sig,
                        optional=[n for n in sig["inputs"] if n not in needed])
    batch = sample_dim(sig, data, args.model, "gradc predict")
    check_labels(args.data, data, task)
    scored = model.supports("loss") and all(n in data for n in entry_inputs(model, "loss"))
    accuracy = task.classifier and task.labels in data
    n = count(data)
    print(f"model {model.name} ({args.model}), params {args.params}")
    print(f"data {args.data}: {n} samples; {_labels_note(task, data)}", flush=True)

    # An output without the sample axis in front depends on the whole set: one call.
    per_sample = all(shape and shape[0] == batch for _dt, shape in sig["outputs"].values())
    size = args.batch_size if per_sample else n
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    parts: dict[str, list] = {name: [] for name in sig["outputs"]}
    loss, correct, labelled = 0.0, 0, 0
    bar = progress_bar(n, progress)
    try:
        for chunk in batches(data, size):
            outputs = model.to_host(model.forward(params, **chunk))
            for name, value in outputs.items():
                parts[name].append(np.asarray(value))
            if scored:
                loss += model.loss(params, **chunk) * count(chunk)
            if accuracy:
                hit, total = task.hits(outputs, chunk)
                correct, labelled = correct + hit, labelled + total
            bar.update(count(chunk))
    except ValueError as e:             # a range check inside a kernel (embedding ids, ...)
        raise GradcError(f"{args.data}: error: {e}") from None
    finally:
        bar.close()
    preds = {name: np.concatenate(p) if per_sample else p[0] for name, p in parts.items()}
    if scored:
        print(f"loss {loss / n:.4g}{percent(correct / labelled if accuracy else None)} "
              f"({n} samples)")
    elif accuracy:
        print(f"accuracy {100 * correct / labelled:.1f}% ({n} samples)")
    with replacing(args.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **preds)
    print(f"wrote {args.out}: " + ", ".join(f"{name} {a.dtype.name} {fmt_shape(a.shape)}"
                                             for name, a in preds.items()), flush=True)
    return EXIT_OK


def _labels_note(task, data: dict) -> str:
    """What the header says about the labels: the task, or that the file has none."""
    if task.labels is not None and task.labels not in data:
        return f"no labels '{task.labels}' in the file: outputs only"
    return task.describe()
