"""Graph -> fused-kernel program for one spec: fusion decisions, kernels, buffer plan.

Fusion: an elementwise node whose only consumer is elementwise over the same shape (or a
reduction of it) is inlined into that consumer's expression; broadcasts and transposes are
index maps, not copies; a transpose feeding a matmul becomes a BLAS transpose flag; a sum
of values placed apart into zeros (a concat, the gradient of a value sliced in several
places) is written part by part into one buffer.
Everything else is materialised into a workspace slice planned once per dims, reusing slots
whose values are dead (equal size and dtype).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from gradc.ir.build import apart, placements
from gradc.ir.graph import Graph, Node
from gradc.ir.shapes import free_dims, numel
from gradc.kinds import KINDS
from gradc.passes.kernels import Buffer, Check, Loop, Program, Read, View

ALIGN = 16
#: the most inlined nodes one fused expression may nest (deeper chains are materialised).
MAX_FUSED_DEPTH = 24


@dataclass
class ProgramSpec:
    """What one kernel program (one compiled function) computes, before scheduling.

    Attributes:
        name: 'forward', 'loss_and_grad', 'train_step', 'jvp', 'vjp', ...
        args: leaf nodes in call order (arrays, then scalars).
        roots: values returned, in order.
        stores: (leaf, value) pairs written in place after everything else (optimizers).
        graph: the graph the spec runs on (a model with batchnorm or dropout has two).
        checks: (label or index tensor, limit, kind) for every lookup in what the spec
            differentiates: each is range-checked even where the spec's kernels do not
            read it (see :class:`~gradc.passes.kernels.Check`).
    """

    name: str
    args: list[Node]
    roots: list[Node]
    stores: list[tuple[Node, Node]] = field(default_factory=list)
    graph: Graph | None = None
    checks: list[tuple[Node, sympy.Expr, str]] = field(default_factory=list)

    @property
    def batch_dim(self) -> str | None:
        """The dim every model input of the program leads with (the batch dim of
        ``train_epoch``), or None if they do not share a symbolic one."""
        inputs = [n for n in self.args
                  if n.op == "input" and n.attrs.get("role", "input") == "input"]
        leads = {n.shape[0] if n.shape else None for n in inputs}
        if len(leads) != 1:
            return None
        lead = leads.pop()
        return lead.name if lead is not None and lead.is_Symbol else None


def schedule(g: Graph, spec: ProgramSpec, arg_name: Callable[[Node], str]) -> Program:
    """Return the kernel program of ``spec``; ``arg_name`` names each leaf's variable."""
    return _Scheduler(g, spec, arg_name).run()


class _Scheduler:
    """The scheduler of one program. The kinds' scheduling rules (:mod:`gradc.kinds`)
    receive it and use ``mode``, ``home`` and ``store_of`` (the decisions so far),
    :meth:`fuses`, :meth:`placed`, :meth:`space`, :meth:`define`, :meth:`expr_of` and
    :meth:`buffer_or_leaf`."""

    def __init__(self, g: Graph, spec: ProgramSpec, arg_name):
        self.g, self.spec = g, spec
        self.values = [v for _, v in spec.stores]
        self.nodes = g.topo(spec.roots + self.values + [t for t, _ in spec.stores]
                            + [n for n, _, _ in spec.checks])
        self.consumers = g.consumers(self.nodes)
        self.root_ids = {r.id for r in spec.roots}
        self.store_of = {v.id: t for t, v in spec.stores}
        self._placed: dict[int, bool] = {}
        # Decided consumers first: whether a node fuses depends on where its consumers go.
        self.mode: dict[int, str] = {}
        self.home: dict[int, int] = {}  # the node whose kernel evaluates an inlined node
        depth: dict[int, int] = {}  # how many inlined nodes lie between n and its kernel
        for n in reversed(self.nodes):
            self.mode[n.id] = self._mode(n)
            cs = self.consumers.get(n.id, [])
            # The walk below (define/expr_of), SymPy and the printers recurse once per
            # level of a fused expression: a long chain (tanh(tanh(...)), a sum of 600
            # gradient terms) is cut into kernels of at most MAX_FUSED_DEPTH levels.
            d = 1 + max(depth.get(c.id, 0) for c in cs) if self.mode[n.id] in (
                "inline", "virtual") else 0
            if d > MAX_FUSED_DEPTH and self.mode[n.id] == "inline":
                self.mode[n.id], d = "kernel", 0
            depth[n.id] = d
            inline = self.mode[n.id] == "inline" and n.shape == self.space(cs[0])
            homes = {self.home[c.id] for c in cs}
            # An inlined node is evaluated in its consumers' kernel; one inlined into
            # several kernels (an identity is inlined wherever it is read) has no single
            # home (None), and nothing fuses under it: its input is computed once, not
            # again in each of those kernels (a residual stream's gradient summed afresh
            # at every block).
            self.home[n.id] = (homes.pop() if len(homes) == 1 else None) if inline else n.id
        self.buf: dict[int, Buffer] = {}
        self.width = len(str(len(g.nodes) - 1))  # of the buffers' numbers (see _name)
        self.prog = Program(spec.name, [], [], float_dtype=g.float_dtype)
        for n in spec.args:
            kind = "scalar" if n.op == "hyper" else "arg"
            self.buf[n.id] = Buffer(arg_name(n), n.shape, n.dtype, kind,
                                    title=n.attrs["name"])
            self.prog.args.append(self.buf[n.id])
        for n in self.nodes:
            if n.op == "dim":
                self.buf[n.id] = Buffer(n.attrs["name"], (), n.dtype, "dim")

    # ------------------------------------------------------------------ fusion decisions
    def _mode(self, n: Node) -> str:
        kind = KINDS[n.op]
        if kind.leaf:
            return "leaf"
        if n.id in self.store_of:
            return "store"
        if kind.view:
            return "view"
        cs = self.consumers.get(n.id, [])
        fusing = cs and all(self.fuses(c) for c in cs)
        if n.id in self.root_ids:
            return "kernel"
        if len(cs) == 1 and self.placed(cs[0]):
            return "placed"  # an unslice its consumer writes into its own buffer
        return (kind.fuse and kind.fuse(self, n, cs, fusing)) or "kernel"

    @staticmethod
    def fuses(n: Node) -> bool:
        """Whether ``n`` reads its inputs inside its own loop (they may be inlined)."""
        return KINDS[n.op].fusing

    def placed(self, n: Node) -> bool:
        """Whether ``n`` is a sum of values placed into zeros (:func:`build.placements`)
        written part by part into one buffer: two or more unslices whose regions lie
        apart, each read by ``n`` alone and none a result or a store, ``n`` no store.
        Its unslices then take the mode 'placed' (no kernel, no buffer of their own) and
        ``n`` is one :class:`~gradc.passes.kernels.Scatter` of them: a concat of k parts
        writes each part once, not k zero-filled buffers of the full shape summed."""
        if n.id not in self._placed:
            parts = placements(n)
            self._placed[n.id] = (
                parts is not None and len(parts) > 1 and n.id not in self.store_of
                and all(p.id not in self.root_ids and p.id not in self.store_of
                        and [c.id for c in self.consumers.get(p.id, [])] == [n.id]
                        for p in parts)
                and all(apart(p, q) for i, p in enumerate(parts) for q in parts[i + 1:]))
        return self._placed[n.id]

    @staticmethod
    def space(n: Node):
        """The loop space ``n``'s kernel runs over."""
        return KINDS[n.op].space(n)

    # ------------------------------------------------------------------ expressions
    def expr_of(self, n: Node, axes: tuple) -> sympy.Expr:
        """The value of ``n`` at loop index ``axes`` (n's axis k -> loop axis or None)."""
        mode = self.mode[n.id]
        if mode in ("inline", "virtual"):
            return self.define(n, axes)
        if mode == "store":
            return Read(self.buf[self.store_of[n.id].id], axes)
        return Read(self.buffer(n), axes)

    def define(self, n: Node, axes: tuple) -> sympy.Expr:
        """Expand ``n``'s own definition one level, its inputs through :meth:`expr_of`."""
        rule = KINDS[n.op].define
        assert rule is not None, n
        return rule(self, n, axes)

    # ------------------------------------------------------------------ buffers
    def buffer(self, n: Node) -> Buffer:
        """The buffer holding ``n`` (created on first use)."""
        if n.id not in self.buf:
            mode = self.mode[n.id]
            assert mode in ("kernel", "view"), (n, mode)
            if mode == "view":
                self.buf[n.id] = Buffer(self._name(n), n.shape, n.dtype, "view",
                                        base=self.buffer(n.inputs[0]))
            else:
                # Results are the caller's; integer intermediates (a sliced index tensor)
                # cannot live in the float workspace.
                fresh = (n.id in self.root_ids and n.rank) or not n.is_float
                kind = "fresh" if fresh else "ws"
                self.buf[n.id] = Buffer(self._name(n), n.shape, n.dtype, kind)
        return self.buf[n.id]

    def _name(self, n: Node) -> str:
        """``v<id>``, the id zero-padded to the width of the graph's largest: SymPy orders
        a sum's terms by the names of its symbols, and names that sort as their numbers
        give every instance of a repeated block one order of float additions (``v99 +
        v100`` would print as ``v100 + v99``), so that the instances share one compiled
        body (:mod:`gradc.codegen.cpu.outline`)."""
        return f"v{n.id:0{self.width}d}"

    # ------------------------------------------------------------------ kernels
    def run(self) -> Program:
        for n in self.nodes:
            mode = self.mode[n.id]
            if mode == "view":
                self.prog.kernels.append(View(self.buffer(n), n.span))
            elif mode == "kernel":
                self.prog.kernels.append(self._kernel(n))
        self._checks()
        self._stores()
        self._results()
        self.prog.kernels = merge_loops(self.prog.kernels)
        self.prog.dims = sorted(set().union(*(free_dims(b.shape) for b in self.prog.args),
                                            set()))
        self.prog.ws_size = plan_workspace(self.prog)
        return self.prog

    def _kernel(self, n: Node):
        rule = KINDS[n.op].lower
        assert rule is not None, f"schedule: no kernel for {n.op}"
        return rule(self, n, self.buffer(n))

    def buffer_or_leaf(self, n: Node) -> Buffer:
        """The materialised buffer of ``n`` (a leaf's argument buffer included)."""
        return self.buf[n.id] if n.id in self.buf else self.buffer(n)

    def _checks(self) -> None:
        """A :class:`Check` of each of the spec's label and index tensors that no kernel
        checks against the same limit (before the in-place stores)."""
        done = {(id(b), limit) for k in self.prog.kernels for b, limit, _ in k.bounds()}
        for n, limit, kind in self.spec.checks:
            buf = self.buffer_or_leaf(n)
            if (id(buf), limit) not in done:
                done.add((id(buf), limit))
                self.prog.kernels.append(Check(buf, limit, kind, n.span))

    def _stores(self) -> None:
        loops: dict[tuple, Loop] = {}
        for target, value in self.spec.stores:
            tbuf = self.buf[target.id]
            expr = self.define(value, tuple(range(value.rank)))
            loop = loops.setdefault(tuple(value.shape), Loop(value.shape, [], value.span))
            loop.stores.append((tbuf, expr))
        self.prog.kernels.extend(loops.values())

    def _results(self) -> None:
        used = set()
        for r in self.spec.roots:
            src = self.buf.get(r.id)
            if src is not None and not r.rank:
                self.prog.results.append(src)  # scalars are returned by value
                continue
            if src is not None and src.kind == "fresh" and id(src) not in used:
                used.add(id(src))
                self.prog.results.append(src)
                continue
            out = Buffer(f"r{len(self.prog.results)}", r.shape, r.dtype, "fresh")
            ident = tuple(range(r.rank))
            value = Read(src, ident) if src is not None else self.expr_of(r, ident)
            self.prog.kernels.append(Loop(r.shape, [(out, value)], r.span))
            self.prog.results.append(out)


def merge_loops(kernels: list) -> list:
    """Fuse each run of adjacent elementwise loops over the same shape into one loop with
    several stores, when every later store reads what an earlier one wrote only at the
    same index (the fresh value) and writes nothing an earlier one reads: one pass over
    memory and one loop nest for the compiler instead of several."""
    out: list = []
    for kern in kernels:
        prev = out[-1] if out else None
        if isinstance(kern, Loop) and isinstance(prev, Loop) and prev.shape == kern.shape \
                and _mergeable(prev, kern):
            out[-1] = Loop(prev.shape, prev.stores + kern.stores, prev.span or kern.span)
        else:
            out.append(kern)
    return out


def _mergeable(first: Loop, second: Loop) -> bool:
    """Element i of the merged loop runs first's stores, then second's: safe when every
    buffer one side writes is read by the other only at element i itself."""
    ident = tuple(range(len(first.shape)))
    written = {id(b) for b, _ in first.stores} | {id(b) for b, _ in second.stores}
    for _, expr in first.stores + second.stores:
        for r in expr.atoms(Read):
            if id(r.buffer) in written and r.axes != ident:
                return False
    return not any(b.kind == "view" for b, _ in first.stores + second.stores)


class Align(sympy.Function):
    """``size`` rounded up to a multiple of :data:`ALIGN` elements (64 bytes in f32)."""

    nargs = 1

    @classmethod
    def eval(cls, size):
        if size.is_Integer:
            return sympy.Integer(-(-int(size) // ALIGN) * ALIGN)
        return None


def plan_workspace(prog: Program) -> sympy.Expr:
    """Give every 'ws' buffer an offset; reuse a dead slot of equal size and dtype.

    A sweep over the kernels: a buffer takes the oldest slot of its size that died before
    it is written (free slots are queued per size, keyed by the expanded size expression),
    else a new slot at the end. Near-linear in the number of buffers (comparing each new
    buffer with every free slot took 10 of the 12 s a 600-layer chain's programs needed).
    Returns the workspace's total size in elements.
    """
    last_use: dict[int, int] = {}
    end = len(prog.kernels)
    for k, kern in [*enumerate(prog.kernels), (end, None)]:
        for b in kernel_buffers(kern) if kern is not None else prog.results:
            while b is not None:
                last_use[id(b)] = k
                b = b.base
    free: dict[sympy.Expr, collections.deque] = collections.defaultdict(collections.deque)
    total = sympy.Integer(0)
    dead_after: dict[int, list[tuple[sympy.Expr, sympy.Expr]]] = {}
    for k, kern in enumerate(prog.kernels):
        for b in kernel_outputs(kern):
            if b.kind != "ws" or b.offset is not None:
                continue
            size = Align(numel(b.shape))
            key = sympy.expand(size)
            if free[key]:
                b.offset = free[key].popleft()
            else:
                b.offset, total = total, total + size
            dead_after.setdefault(last_use.get(id(b), k), []).append((key, b.offset))
        for key, offset in dead_after.pop(k, []):
            free[key].append(offset)
    return total


def kernel_outputs(kern) -> list[Buffer]:
    """The buffers a kernel writes."""
    return kern.writes()


def kernel_buffers(kern) -> list[Buffer]:
    """Every buffer a kernel reads or writes."""
    return kern.writes() + kern.reads()
