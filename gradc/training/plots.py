"""The pictures of ``gradc train``: ``loss.png`` and ``boundary.png`` (matplotlib, Agg), and
of ``python -m gradc.datasets pinn_* --plot``: a solution beside its error.

Sizes are fixed (``figsize * DPI`` pixels, no tight bounding box) so that tools and tests
can rely on them: :data:`LOSS_SIZE` and :data:`BOUNDARY_SIZE`. Each picture is written to a
temporary file and renamed into place, so a reader never sees half a PNG.
"""

from __future__ import annotations

import textwrap

import numpy as np

from gradc.training.data import batches
from gradc.training.files import replacing

DPI = 100
LOSS_FIGSIZE = (10.0, 4.0)          # inches: loss on the left, accuracy on the right
BOUNDARY_FIGSIZE = (6.0, 6.0)
SOLUTION_FIGSIZE = (10.0, 4.0)      # inches: the solution on the left, its error on the right
LOSS_SIZE = (int(LOSS_FIGSIZE[0] * DPI), int(LOSS_FIGSIZE[1] * DPI))      # (width, height)
BOUNDARY_SIZE = (int(BOUNDARY_FIGSIZE[0] * DPI), int(BOUNDARY_FIGSIZE[1] * DPI))
GRID = 200                           # boundary grid: GRID x GRID points
GRID_BATCH = 4096                    # forward on the grid in batches of this many points


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (it is in the ``train`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history, path, title: str = "", note: str = "no accuracy") -> None:
    """Write the loss curves (and accuracy curves for classifiers) to ``path``; ``note``
    takes the place of the accuracy curves when the history has none (why not)."""
    plt = pyplot()
    epochs = history.column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=LOSS_FIGSIZE, dpi=DPI)
    try:
        if not len(history):    # interrupted in its first epoch: the picture says so
            for ax in (ax_loss, ax_acc):
                ax.axis("off")
            fig.text(0.5, 0.5, "no epoch finished yet", ha="center", va="center")
            if title:
                fig.suptitle(title)
            save_figure(fig, path)
            return
        for col, label in (("train_loss", "train"), ("val_loss", "validation")):
            if history.has(col):
                ax_loss.plot(*_points(epochs, history.column(col)), label=label)
        losses = [v for c in ("train_loss", "val_loss") for v in history.column(c)
                  if v is not None]
        if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
            ax_loss.set_yscale("log")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_loss.grid(True, alpha=0.3)
        ax_loss.legend()
        if history.has("train_acc"):
            for col, label in (("train_acc", "train"), ("val_acc", "validation")):
                if history.has(col):
                    xs, ys = _points(epochs, history.column(col))
                    ax_acc.plot(xs, [100 * v for v in ys], label=label)
            ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
            ax_acc.grid(True, alpha=0.3)
            ax_acc.legend()
        else:
            ax_acc.axis("off")
            ax_acc.text(0.5, 0.5, textwrap.fill(note, 40), ha="center", va="center",
                        transform=ax_acc.transAxes)
        if title:
            fig.suptitle(title)
        save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_solution(coords: np.ndarray, u: np.ndarray, exact: np.ndarray, path,
                  title: str = "") -> None:
    """Write a solution ``u`` and its error ``u - exact`` on a grid to ``path``.

    ``coords`` are the grid's points: ``[M, 1]`` (curves of u and the exact solution, and
    the error curve) or ``[M*M, 2]`` in row-major order of a square lattice (heat maps)."""
    plt = pyplot()
    fig, (ax_u, ax_e) = plt.subplots(1, 2, figsize=SOLUTION_FIGSIZE, dpi=DPI)
    u, exact = np.ravel(u).astype(np.float64), np.ravel(exact).astype(np.float64)
    try:
        if coords.shape[1] == 1:
            t = coords[:, 0]
            ax_u.plot(t, exact, label="exact", lw=3, alpha=0.4)
            ax_u.plot(t, u, label="network", lw=1)
            ax_u.legend()
            ax_e.plot(t, u - exact)
            for ax, name in ((ax_u, "u"), (ax_e, "u - exact")):
                ax.set(xlabel="t", title=name)
                ax.grid(True, alpha=0.3)
        else:
            m = int(round(np.sqrt(len(u))))
            box = (coords[:, 0].min(), coords[:, 0].max(), coords[:, 1].min(),
                   coords[:, 1].max())
            err = u - exact
            bound = float(np.abs(err).max()) or 1.0
            for ax, field, name, scale in ((ax_u, u, "u", {"cmap": "viridis"}),
                                           (ax_e, err, "u - exact",
                                            {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound})):
                im = ax.imshow(field.reshape(m, m).T, origin="lower", extent=box, **scale)
                fig.colorbar(im, ax=ax)
                ax.set(xlabel="x", ylabel="y", title=name)
        if title:
            fig.suptitle(title)
        save_figure(fig, path)
    finally:
        plt.close(fig)


def save_figure(fig, path) -> None:
    """``fig.savefig`` through a temporary file renamed over ``path``."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=DPI)


def _points(xs, ys):
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def decision_grid(model, params, task, x: np.ndarray, grid: int = GRID):
    """The predicted class on a ``grid x grid`` lattice covering the points ``x`` [N, 2].

    Returns:
        (xx, yy, classes): the lattice coordinates and the argmax of the scores (the
        task's ``output``).
    """
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    xx, yy = np.meshgrid(xs, ys)
    pts = np.ascontiguousarray(np.c_[xx.ravel(), yy.ravel()], dtype=x.dtype)
    pred = np.empty(len(pts), dtype=np.int64)
    start = 0
    for b in batches({"p": pts}, GRID_BATCH):
        scores = model.forward(params, **{task.point_input: b["p"]})[task.output]
        pred[start:start + len(b["p"])] = np.argmax(scores, axis=-1)
        start += len(b["p"])
    return xx, yy, pred.reshape(xx.shape)


def plot_boundary(model, params, task, train: dict, val: dict | None, path,
                  title: str = "") -> None:
    """Write the decision regions of a 2-D classifier with the data points on top:
    training points as circles, validation points as triangles."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    pts = [train[task.point_input]] + ([val[task.point_input]] if val else [])
    xx, yy, pred = decision_grid(model, params, task, np.concatenate(pts))
    k = task.classes
    colors = plt.get_cmap("tab10" if k <= 10 else "tab20")(np.arange(k) % 20)
    fig, ax = plt.subplots(figsize=BOUNDARY_FIGSIZE, dpi=DPI)
    try:
        ax.contourf(xx, yy, pred, levels=np.arange(k + 1) - 0.5,
                    cmap=ListedColormap(colors), alpha=0.35)
        for data, marker in ((train, "o"), (val, "^")):
            if data is None:
                continue
            p, y = data[task.point_input], data[task.labels]
            ax.scatter(p[:, 0], p[:, 1], c=colors[y % len(colors)], marker=marker, s=18,
                       edgecolors="k", linewidths=0.4)
        ax.set(xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()),
               xlabel=f"{task.point_input}[:, 0]", ylabel=f"{task.point_input}[:, 1]")
        ax.set_title(title or "decision regions")
        handles = [Line2D([], [], ls="", marker=m, color="0.6", markeredgecolor="k",
                          label=lab) for d, m, lab in ((train, "o", "train"),
                                                      (val, "^", "validation")) if d]
        ax.legend(handles=handles, loc="upper right", fontsize="small")
        save_figure(fig, path)
    finally:
        plt.close(fig)
