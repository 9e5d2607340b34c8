"""The VJP and JVP rules of the ``loop`` node (:mod:`gradc.ir.loops`): loops over derived
bodies, each body differentiated by the ordinary rules.

For a loop ``h_t = f(h_{t-1}, s_t, c)`` (``h_{t-1}`` the carry the step reads, see
:func:`~gradc.ir.loops.previous`):

- JVP: a loop in the same order carrying the tangent,
  ``dh_t = jvp f(h_{t-1}, s_t, c)[dh_{t-1}, ds_t, dc]``;
- VJP: a loop in the opposite order carrying the cotangent that reaches ``h_{t-1}``,
  ``C_t = vjp_h f(h_{t-1}, s_t, c)[ct_t + C_{t+1}]``; with ``L_t = ct_t + C_{t+1}``, each
  sequence's cotangent is a loop of ``vjp_s f(...)[L_t]`` and each constant's the sum over
  t of ``vjp_c f(...)[L_t]``.
"""

from __future__ import annotations

from gradc.autodiff import forward, reverse
from gradc.ir import build, loops
from gradc.ir.graph import Graph, Node


def _add(g: Graph, a: Node, b: Node) -> Node:
    return build.ew(g, lambda x, y: x + y, a, b)


def loop_jvp(g: Graph, n: Node, tans: list) -> Node:
    body, seqs, consts = loops.parts(n)
    k = len(seqs)
    moving = [(leaf, t) for leaf, t in zip(body.seqs + body.consts, tans) if t is not None]
    d_seqs = [t for t in tans[:k] if t is not None]
    d_consts = [t for t in tans[k:] if t is not None]

    def step(b, carry, s, c):
        # s: h_{t-1}, the sequences, their tangents; c: the constants, their tangents
        m = dict(zip((leaf.id for leaf, _ in moving), s[1 + k:] + c[len(consts):]))
        out = loops.instantiate(b, body, s[0], s[1:1 + k], c[:len(consts)])
        leaves = {leaf.id: node for leaf, node in
                  zip(body.leaves, [s[0], *s[1:1 + k], *c[:len(consts)]])}
        tangents = {s[0].id: carry, **{leaves[i].id: t for i, t in m.items()}}
        return forward.jvp(b, [out], tangents)[0]

    all_seqs = [loops.previous(g, n), *seqs, *d_seqs]
    all_consts = [*consts, *d_consts]
    tbody = loops.make_body(g.float_dtype, loops.step_type(n), all_seqs, all_consts, step)
    return loops.loop(g, tbody, all_seqs, all_consts, n.attrs["reverse"])


def loop_vjp(g: Graph, n: Node, ct: Node) -> list:
    body, seqs, consts = loops.parts(n)
    k, back = len(seqs), not n.attrs["reverse"]
    driven = [ct, loops.previous(g, n), *seqs]

    def carried(b, kappa, s, c):
        out = loops.instantiate(b, body, s[1], s[2:], c)
        return reverse.vjp(b, [(out, _add(b, s[0], kappa))], [s[1]])[0]

    cbody = loops.make_body(g.float_dtype, loops.step_type(n), driven, consts, carried)
    reached = loops.loop(g, cbody, driven, consts, back)
    driven = [_add(g, ct, loops.shift(g, reached, later=back)), *driven[1:]]

    def cotangent(i: int) -> Node:
        def step(b, _, s, c):
            out = loops.instantiate(b, body, s[1], s[2:], c)
            return reverse.vjp(b, [(out, s[0])], [(s[2:] + c)[i]])[0]

        leaf = (body.seqs + body.consts)[i]
        gbody = loops.make_body(g.float_dtype, (leaf.shape, leaf.dtype), driven, consts, step)
        per_step = loops.loop(g, gbody, driven, consts)
        return per_step if i < k else build.reduce(g, per_step, "sum", (0,))

    return [cotangent(i) if inp.is_float else None for i, inp in enumerate(n.inputs)]
