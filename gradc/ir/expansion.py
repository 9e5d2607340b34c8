"""How large an expression becomes once every user ``fn`` call in it is inlined.

User fns are inlined at each call, so a fn that calls another twice doubles in size at
every level: ``fn f1(z) = f0(z) + f0(z)`` ... ``f24`` is 2^24 copies of ``f0``. The sizes
here are counted on the AST, before anything is lowered, so such a model is refused at once
with a located error instead of hanging (:data:`MAX_EXPANDED`). Every walk is iterative:
fn chains and nestings thousands deep are legitimate models.
"""

from __future__ import annotations

from dataclasses import fields

from gradc.frontend import ast

#: the most operations (AST nodes, with every fn call and layer composition inlined) that
#: one statement may expand to.
MAX_EXPANDED = 50_000


def children(e) -> list:
    """The sub-expressions of an AST expression (keyword values included)."""
    out = []
    for f in fields(e):
        v = getattr(e, f.name)
        for item in (v if isinstance(v, tuple) else (v,)):
            if isinstance(item, ast.Keyword):
                item = item.value
            if isinstance(item, ast.Expr):
                out.append(item)
    return out


def _refs(e) -> list[str]:
    """Names this one node applies: the called name, the names of a pipe or composition."""
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        return [e.func.id]
    parts = ()
    if isinstance(e, ast.Pipe):
        parts = e.func.parts if isinstance(e.func, ast.Compose) else (e.func,)
    elif isinstance(e, ast.Compose):
        parts = e.parts
    return [p.id for p in parts if isinstance(p, ast.Name)]


def fn_body(f: ast.FnDecl) -> ast.Expr:
    """A fn's whole body as one expression: its return value, with the values of its
    local assignments alongside (a tuple) when it has any."""
    if not f.lets:
        return f.body
    return ast.TupleLit(f.span, (*(let.value for let in f.lets), f.body))


class Sizes:
    """Expanded sizes of the fns and layer compositions of one module, memoised."""

    def __init__(self, fns: dict[str, ast.FnDecl], module: ast.Module):
        self.bodies: dict[str, ast.Expr] = {n: fn_body(f) for n, f in fns.items()}
        for s in module.stmts:
            if isinstance(s, ast.LayerDecl) and s.name not in self.bodies:
                self.bodies[s.name] = s.value
        self._local: dict[str, tuple[int, list[str]]] = {}
        self._size: dict[str, int] = {}

    def local(self, e: ast.Expr) -> tuple[int, list[str]]:
        """(number of AST nodes of ``e``, the fn and layer names it applies, repeated)."""
        count, refs, todo = 0, [], [e]
        while todo:
            node = todo.pop()
            count += 1
            refs += [r for r in _refs(node) if r in self.bodies]
            todo += children(node)
        return count, refs

    def of_name(self, name: str) -> int:
        """The expanded size of the fn or layer ``name`` (a recursive call counts 1: the
        recursion itself is an error of its own)."""
        if name in self._size:
            return self._size[name]
        on_path, stack = {name}, [name]
        while stack:
            top = stack[-1]
            if top not in self._local:
                self._local[top] = self.local(self.bodies[top])
            count, refs = self._local[top]
            pending = [r for r in refs if r not in self._size and r not in on_path]
            if pending:
                on_path.add(pending[0])
                stack.append(pending[0])
                continue
            total = count + sum(self._size.get(r, 1) for r in refs)
            self._size[top] = min(total, 100 * MAX_EXPANDED)  # keep the numbers small
            on_path.discard(top)
            stack.pop()
        return self._size[name]

    def of_expr(self, e: ast.Expr) -> int:
        """The expanded size of the expression ``e``."""
        count, refs = self.local(e)
        return count + sum(self.of_name(r) for r in refs)

    def culprit(self, e: ast.Expr) -> tuple[ast.Expr, str | None]:
        """The outermost call in ``e`` that alone expands past the limit (else ``e``), and a
        hint naming the fn that multiplies the size."""
        todo = [e]
        while todo:
            node = todo.pop(0)
            big = [r for r in _refs(node) if r in self.bodies
                   and self.of_name(r) > MAX_EXPANDED]
            if big:
                return node, self._hint(big[0])
            todo += children(node)
        return e, None

    def _hint(self, name: str) -> str | None:
        """``'f24' calls 'f23' 2 times, ...`` along the path of the largest callees."""
        steps, seen = [], set()
        while name not in seen and len(steps) < 3:
            seen.add(name)
            _, refs = self._local.get(name) or self.local(self.bodies[name])
            if not refs:
                break
            callee = max(set(refs), key=lambda r: (self.of_name(r), r))
            steps.append(f"'{name}' calls '{callee}' {refs.count(callee)} time"
                         + ("s" if refs.count(callee) != 1 else ""))
            name = callee
        if not steps:
            return None
        return ", ".join(steps) + ", ...: every call is inlined, so repeated calls multiply " \
            "the size at every level"
