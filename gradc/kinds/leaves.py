"""The leaves: the values a program is given (``input``, ``param``, ``hyper``) and the
call-time value of a dim (``dim``). They have no inputs, so no rules but the dim's value."""

from __future__ import annotations

import numpy as np

from gradc.kinds.kind import Kind


def _show(node) -> str:
    a = node.attrs
    role = a.get("role")
    return f"{node.op} {a.get('name')}" + (f" ({role})" if role else "")


KINDS = (
    Kind("input", "—", ("name", "role"),
         "a model input, or (its role) a tangent, cotangent, optimizer state, batchnorm "
         "buffer or dropout noise leaf added by later stages", leaf=True, show=_show),
    Kind("param", "—", ("name",), "a trained parameter", leaf=True, show=_show),
    Kind("dim", "—", ("name",), "the call-time value of a dim, as a float", leaf=True,
         evaluate=lambda n, ins, shape, dims: np.float64(dims[n.attrs["name"]]), show=_show),
    Kind("hyper", "—", ("name",), "a float scalar passed by value", leaf=True, show=_show),
)
