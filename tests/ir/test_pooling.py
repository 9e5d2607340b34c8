"""Pooling's two lowerings (``gradc/ir/layers.py``, ``_pool``): windows that tile the image
(stride k, H and W multiples of k) reduce a [N*C*OH, k, OW, k] view of it, the others
reduce im2col patches. Drawn shapes, window sizes and strides, on the numpy target (no
Numba compile), against a NumPy loop over the windows: the forward, and the VJP (max: the
cotangent to each window's maximum, values drawn distinct; average: spread evenly); and
the form each case is lowered to. The torch comparison of both forms on the CPU target is
``tests/ir/test_layers_torch.py`` (case pool2d)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import gradc
from gradc.options import Options
from gradc.pipeline import front
from gradc.source import Source

MODEL = """model pool
input  x : f64[B, {c}, {h}, {w}]
layer  p = {kind}({k}, stride={s})
output y = p(x)
"""


def _windows(x: np.ndarray, k: int, s: int):
    """Yield (i, j, window view) over every pooling window of x [N, C, H, W]: the window
    of output position (i, j), for every image and channel at once."""
    n, c, h, w = x.shape
    for i in range((h - k) // s + 1):
        for j in range((w - k) // s + 1):
            yield i, j, x[:, :, i * s:i * s + k, j * s:j * s + k]


def _reference(x, ct, kind, k, s):
    """(forward, VJP) of the pooling by a loop over the windows."""
    n, c, h, w = x.shape
    out = np.empty((n, c, (h - k) // s + 1, (w - k) // s + 1))
    dx = np.zeros_like(x)
    for i, j, win in _windows(x, k, s):
        flat = win.reshape(n, c, k * k)
        if kind == "maxpool2d":
            out[:, :, i, j] = flat.max(axis=2)
            hit = (flat == out[:, :, i, j][..., None]).reshape(win.shape)
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += hit * ct[:, :, i, j][..., None, None]
        else:
            out[:, :, i, j] = flat.mean(axis=2)
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += ct[:, :, i, j][..., None, None] / (k * k)
    return out, dx


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["maxpool2d", "avgpool2d"]), k=st.integers(1, 3),
       step=st.sampled_from(["tile", "overlap", "gap"]), oh=st.integers(1, 3),
       ow=st.integers(1, 3), extra=st.integers(0, 2), c=st.integers(1, 3),
       n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_both_lowerings_pool_every_window(kind, k, step, oh, ow, extra, c, n, seed):
    s = {"tile": k, "overlap": max(1, k - 1), "gap": k + 1}[step]
    h, w = (oh - 1) * s + k + extra, (ow - 1) * s + k
    text = MODEL.format(c=c, h=h, w=w, kind=kind, k=k, s=s)
    tiles = s == k and h % k == 0 and w % k == 0
    graph, _ = front(Source(text, "pool.grad"), Options.make(dtype="f64"))
    assert any(nd.op == "patches" for nd in graph.nodes) == (not tiles), text

    rng = np.random.default_rng(seed)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) / 7.0   # distinct: no ties
    model = gradc.compile_string(text, name="pool.grad", target="numpy", dtype="f64",
                                 wrt=["x"])
    y = model.forward({}, x=x)["y"]
    ct = rng.standard_normal(y.shape)
    want_y, want_dx = _reference(x, ct, kind, k, s)
    np.testing.assert_allclose(y, want_y, rtol=1e-14, atol=0)
    dx = model.vjp({}, {"y": ct}, x=x)["x"]
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13, atol=1e-15)
