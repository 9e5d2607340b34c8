"""Window kinds: ``patches`` (im2col of NCHW ``x`` into [N, OH, OW, C*kh*kw]) and its
adjoint ``unpatches`` (col2im, overlapping windows added up). ``k``, ``stride`` and
``pad`` are each an int, or an (h, w) pair where the image axes differ
(:func:`gradc.ir.build.window` reads either)."""

from __future__ import annotations

import numpy as np

from gradc.ir import build
from gradc.ir.build import window
from gradc.ir.graph import Node
from gradc.kinds.kind import Kind
from gradc.passes.kernels import Patches, Unpatches


def _attrs(n: Node) -> dict:
    return {k: n.attrs[k] for k in ("k", "stride", "pad")}


def _windows(n, x):
    """The (N, C, OH, OW, kh, kw) view of the padded input windows."""
    (kh, kw), (sh, sw), (ph, pw) = window(n)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


def _patches(n, ins, shape, dims):
    win = _windows(n, ins[0])                     # N, C, OH, OW, kh, kw
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(shape)


def _unpatches(n, ins, shape, dims):
    (kh, kw), (sh, sw), (ph, pw) = window(n)
    N, C, H, W = shape
    cols = ins[0]
    oh, ow = cols.shape[1], cols.shape[2]
    cols = cols.reshape(N, oh, ow, C, kh, kw)
    out = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            taps = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += taps
    return out[:, :, ph:ph + H, pw:pw + W].copy()


def _lower_window(kernel):
    def lower(s, n: Node, out):
        return kernel(out, s.buffer_or_leaf(n.inputs[0]), *window(n), n.span)
    return lower


KINDS = (
    Kind("patches", "x [N, C, H, W]", ("k", "stride", "pad"),
         "im2col: [N, OH, OW, C*kh*kw] (zeros where padded)",
         vjp=lambda g, n, ct: [build.unpatches(g, ct, n.inputs[0], **_attrs(n))],
         jvp=lambda g, n, t: build.patches(g, t[0], **_attrs(n)),
         evaluate=_patches, lower=_lower_window(Patches), kernels=(Patches,)),
    Kind("unpatches", "p [N, OH, OW, C*kh*kw]", ("k", "stride", "pad"),
         "col2im into the node's shape [N, C, H, W], overlaps added",
         vjp=lambda g, n, ct: [build.patches(g, ct, **_attrs(n))],
         jvp=lambda g, n, t: build.unpatches(g, t[0], n, **_attrs(n)),
         evaluate=_unpatches, lower=_lower_window(Unpatches), kernels=(Unpatches,)),
)
