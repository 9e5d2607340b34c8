"""Loop-nest collapsing: the same elements in the same order, in fewer loops.

Numba's compile time grows with the loops of a function: its liveness and SSA passes are
about quadratic in (blocks x variables) and every ``range`` loop is several blocks. A run
of loop axes that every operand indexes as the same run of its own contiguous axes
(``v[i0, i1, i2, i3] = b[i3] + u[i0, i1, i2, i3]``: axes 0-2) can be one loop over a
reshaped view (``v_r2[i0, i1] = b[i1] + u_r2[i0, i1]``). All arrays a kernel touches are
C-contiguous (caller arrays are checked, workspace slices and fresh arrays are), so the
view aliases the same memory, and the collapsed loop visits the same elements in the same
order: results are bitwise those of the full nest.
"""

from __future__ import annotations

import sympy

from gradc.passes.kernels import Affine, Buffer, Loop, Read, Reduce


def collapse(kern: Loop | Reduce) -> tuple[list[Buffer], Loop | Reduce]:
    """The views to declare and the kernel over collapsed axes (``kern`` itself and no
    views when no two adjacent axes merge). Each view is a ``kind='view'`` buffer named
    ``<base>_r<rank>`` (the rank keeps one Python name one Numba type; mangled model
    names never contain ``_r``)."""
    shape = [sympy.sympify(d) for d in kern.shape]
    refs = _refs(kern)
    red = set(kern.axes) if isinstance(kern, Reduce) else set()
    groups, a = [], 0
    while a < len(shape):
        b = a
        while b + 1 < len(shape) and ((b + 1 in red) == (a in red)) and \
                all(_mergeable(axes, buf.shape, shape, a, b + 1) for buf, axes in refs):
            b += 1
        groups.append((a, b))
        a = b + 1
    if len(groups) == len(shape):
        return [], kern
    new_axis = {old: g for g, (a, b) in enumerate(groups) for old in range(a, b + 1)}
    new_shape = tuple(sympy.Mul(*shape[a:b + 1]) for a, b in groups)
    views: dict[int, Buffer] = {}

    def remap(buf: Buffer, axes: tuple) -> tuple[Buffer, tuple]:
        dims, out_axes, k = [], [], 0
        while k < len(axes):
            e = axes[k]
            if isinstance(e, int):
                a, b = groups[new_axis[e]]
                dims.append(sympy.Mul(*[sympy.sympify(d) for d in buf.shape[k:k + b - a + 1]]))
                out_axes.append(new_axis[e])
                k += b - a + 1
                continue
            dims.append(buf.shape[k])
            out_axes.append(e if e is None else
                            Affine(None if e.axis is None else new_axis[e.axis], e.start, e.step))
            k += 1
        if len(dims) == len(buf.shape):
            return buf, tuple(out_axes)
        if buf.serial not in views:
            views[buf.serial] = Buffer(f"{buf.name}_r{len(dims)}", tuple(dims), buf.dtype,
                                       "view", base=buf)
        return views[buf.serial], tuple(out_axes)

    def rewrite(expr: sympy.Expr) -> sympy.Expr:
        return expr.xreplace({r: Read(*remap(r.buffer, r.axes)) for r in expr.atoms(Read)})

    if isinstance(kern, Loop):
        ident = tuple(range(len(shape)))
        stores = [(remap(buf, ident)[0], rewrite(e)) for buf, e in kern.stores]
        new = Loop(new_shape, stores, kern.span)
    else:
        kept = tuple(a for a in range(len(shape)) if a not in red)
        out = remap(kern.out, kept)[0] if kern.out.shape else kern.out
        new = Reduce(out, kern.kind, new_shape,
                     tuple(sorted({new_axis[a] for a in kern.axes})), rewrite(kern.expr),
                     kern.span)
    return sorted(views.values(), key=lambda v: v.name), new  # (sets of Reads: any order)


def _refs(kern: Loop | Reduce) -> list[tuple[Buffer, tuple]]:
    """Every (buffer, per-axis index) the kernel reads or writes."""
    rank = len(kern.shape)
    if isinstance(kern, Loop):
        exprs = [e for _, e in kern.stores]
        writes = [(buf, tuple(range(rank))) for buf, _ in kern.stores]
    else:
        exprs = [kern.expr]
        kept = tuple(a for a in range(rank) if a not in kern.axes)
        writes = [(kern.out, kept)] if kern.out.shape else []
    reads = [(r.buffer, r.axes) for e in exprs for r in e.atoms(Read) if r.buffer.shape]
    return writes + reads


def _mergeable(axes: tuple, buf_shape, shape: list, a: int, b: int) -> bool:
    """Whether loop axes ``a..b`` can be one axis for a buffer indexed by ``axes``: it
    indexes none of them, or all of them as adjacent axes of its own, in order, full."""
    if any(isinstance(e, Affine) and e.axis is not None and a <= e.axis <= b for e in axes):
        return False
    at = [k for k, e in enumerate(axes) if isinstance(e, int) and a <= e <= b]
    if not at:
        return True
    return len(at) == b - a + 1 and at == list(range(at[0], at[0] + len(at))) and \
        all(axes[k] == a + j and sympy.sympify(buf_shape[k]) == shape[a + j]
            for j, k in enumerate(at))
