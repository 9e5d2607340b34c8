"""Graph -> fused-kernel program for one spec: fusion decisions, kernels, buffer plan.

Fusion: an elementwise node whose only consumer is elementwise over the same shape (or a
reduction of it) is inlined into that consumer's expression; broadcasts and transposes are
index maps, not copies; a transpose feeding a matmul becomes a BLAS transpose flag.
Everything else is materialised into a workspace slice planned once per dims, reusing slots
whose values are dead (equal size and dtype).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from gradc.ir.build import window
from gradc.ir.graph import Graph, Node
from gradc.ir.ops import ARGS
from gradc.ir.shapes import free_dims, numel
from gradc.passes.kernels import (Affine, Buffer, Check, Dot, Loop, Patches, Pick, Program,
                                  Put, Read, Recur, Reduce, Scan, Scatter, Take, Unpatches,
                                  Unpick, View, compose_index)

FUSING = ("ewise", "reduce", "logsumexp")
LEAVES = ("input", "param", "hyper", "dim")
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


def slice_index(spec: tuple, axes) -> tuple:
    """The index map of a sliced array: one spec per axis of the array, given the index
    map ``axes`` of the slice's own (kept) axes."""
    out, j = [], 0
    for s in spec:
        if s[0] == "i":
            out.append(Affine(None, s[1], 0))
        else:
            out.append(compose_index(axes[j], s[1], int(s[2])))
            j += 1
    return tuple(out)


def _is_swap(perm: tuple[int, ...]) -> bool:
    r = len(perm)
    return r >= 2 and perm == tuple(range(r - 2)) + (r - 1, r - 2)


class _Scheduler:
    def __init__(self, g: Graph, spec: ProgramSpec, arg_name):
        self.g, self.spec = g, spec
        self.values = [v for _, v in spec.stores]
        self.nodes = g.topo(spec.roots + self.values + [t for t, _ in spec.stores]
                            + [n for n, _, _ in spec.checks])
        self.consumers = g.consumers(self.nodes)
        self.root_ids = {r.id for r in spec.roots}
        self.store_of = {v.id: t for t, v in spec.stores}
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
            inline = self.mode[n.id] == "inline" and n.shape == self._space(cs[0])
            self.home[n.id] = self.home[cs[0].id] if inline else n.id
        self.buf: dict[int, Buffer] = {}
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
        if n.op in LEAVES:
            return "leaf"
        if n.id in self.store_of:
            return "store"
        if n.op == "reshape":
            return "view"
        cs = self.consumers.get(n.id, [])
        fusing = cs and all(c.op in FUSING for c in cs)
        if n.id in self.root_ids:
            return "kernel"
        if n.op == "ewise":
            if fusing and (not n.inputs or n.attrs["expr"] == ARGS[0]) \
                    and not any(c.id in self.store_of for c in cs):
                return "inline"
            # Into consumers over the same space that all end up in one kernel (its CSE
            # then computes n once); never into an optimizer store: stores run last,
            # after params have changed.
            if fusing and all(self._space(c) == n.shape and c.id not in self.store_of
                              for c in cs) and len({self.home[c.id] for c in cs}) == 1:
                return "inline"
        if n.op == "transpose":
            if all(c.op in FUSING or (c.op == "matmul" and _is_swap(n.attrs["perm"]))
                   for c in cs):
                return "virtual"
        if n.op == "slice" and fusing:
            return "virtual"
        return "kernel"

    @staticmethod
    def _space(n: Node):
        return n.inputs[0].shape if n.op in ("reduce", "logsumexp") else n.shape

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
        if n.op == "transpose":
            perm = n.attrs["perm"]
            return self.expr_of(n.inputs[0], tuple(axes[perm.index(k)] for k in range(n.rank)))
        if n.op == "slice":
            return self.expr_of(n.inputs[0], slice_index(n.attrs["spec"], axes))
        assert n.op == "ewise", n
        subs = {}
        for i, inp in enumerate(n.inputs):
            off = n.rank - inp.rank
            sub_axes = tuple(None if (d == 1 and n.shape[off + k] != 1) else axes[off + k]
                             for k, d in enumerate(inp.shape))
            subs[ARGS[i]] = self.expr_of(inp, sub_axes)
        return n.attrs["expr"].xreplace(subs)

    # ------------------------------------------------------------------ buffers
    def buffer(self, n: Node) -> Buffer:
        """The buffer holding ``n`` (created on first use)."""
        if n.id not in self.buf:
            mode = self.mode[n.id]
            assert mode in ("kernel", "view"), (n, mode)
            if mode == "view":
                self.buf[n.id] = Buffer(f"v{n.id}", n.shape, n.dtype, "view",
                                        base=self.buffer(n.inputs[0]))
            else:
                # Results are the caller's; integer intermediates (a sliced index tensor)
                # cannot live in the float workspace.
                fresh = (n.id in self.root_ids and n.rank) or not n.is_float
                kind = "fresh" if fresh else "ws"
                self.buf[n.id] = Buffer(f"v{n.id}", n.shape, n.dtype, kind)
        return self.buf[n.id]

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
        out, ident = self.buffer(n), tuple(range(n.rank))
        if n.op in ("ewise", "transpose", "slice"):
            return Loop(n.shape, [(out, self.define(n, ident))], n.span)
        if n.op in ("reduce", "logsumexp"):
            (x,) = n.inputs
            kind = n.attrs.get("kind", "logsumexp")
            expr = self.expr_of(x, tuple(range(x.rank)))
            return Reduce(out, kind, x.shape, n.attrs["axes"], expr, n.span)
        if n.op == "matmul":
            (a, ta), (b, tb) = self._operand(n.inputs[0], n.attrs["ta"]), \
                self._operand(n.inputs[1], n.attrs["tb"])
            return Dot(out, a, b, ta, tb, n.span)
        if n.op == "pick":
            return Pick(out, self.buffer_or_leaf(n.inputs[0]), self.buffer_or_leaf(n.inputs[1]),
                        n.span)
        if n.op == "unpick":
            return Unpick(out, self.buffer_or_leaf(n.inputs[0]),
                          self.buffer_or_leaf(n.inputs[1]), n.span)
        src = self.buffer_or_leaf(n.inputs[0]) if n.inputs else None
        if n.op == "unslice":
            return Scatter(out, src, slice_index(n.attrs["spec"], range(n.inputs[0].rank)),
                           n.span)
        if n.op in ("take", "put"):
            kind = Take if n.op == "take" else Put
            return kind(out, src, self.buffer_or_leaf(n.inputs[1]), n.attrs["axis"], n.span)
        if n.op in ("scan", "scan_bwd", "scan_lin"):
            return Recur(n.op, out, tuple(self.buffer_or_leaf(i) for i in n.inputs), n.span)
        if n.op == "loop":
            return self._scan(n, out)
        if n.op in ("patches", "unpatches"):
            kind = Patches if n.op == "patches" else Unpatches
            return kind(out, src, *window(n), n.span)
        raise AssertionError(f"schedule: no kernel for {n.op}")

    def _scan(self, n: Node, out: Buffer) -> Scan:
        body = n.attrs["body"]
        spec = ProgramSpec("body", body.leaves, [body.out], graph=body.graph)
        prog = schedule(body.graph, spec, lambda leaf: leaf.attrs["name"] + "_")
        ins = [self.buffer_or_leaf(i) for i in n.inputs]
        k = len(body.seqs)
        return Scan(out, tuple(ins[:k]), tuple(ins[k:]), prog, n.attrs["reverse"], n.span)

    def buffer_or_leaf(self, n: Node) -> Buffer:
        """The materialised buffer of ``n`` (a leaf's argument buffer included)."""
        return self.buf[n.id] if n.id in self.buf else self.buffer(n)

    def _operand(self, n: Node, flag: bool) -> tuple[Buffer, bool]:
        if self.mode[n.id] == "virtual":
            return self.buffer_or_leaf(n.inputs[0]), not flag
        return self.buffer_or_leaf(n), flag

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
