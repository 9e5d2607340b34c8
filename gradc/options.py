"""Compile options (SPEC §2) and optimizer settings: light, importable without SymPy."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

from gradc.codegen.target import TARGETS
from gradc.dtypes import FLOAT
from gradc.errors import GradcError


@dataclass(frozen=True)
class OptimizerRule:
    """One optimizer, the only place its math is written (every target uses it).

    hyper: the hyper-parameters and their defaults (the learning rate is given per call).
    states: the per-param state arrays it keeps, in order (zeros at the start).
    step_scalars: (name, Python expression in ``{t}``, the 1-based step count, and the
        hyper-parameters, as a :meth:`str.format` template) for each scalar computed per
        step on the host and passed to the kernel after ``lr`` (Adam's bias corrections).
    update: ``update(s, sqrt, flush)`` -> the in-place stores of one step, in order, as
        ``[(target, expression)]``: ``target`` is a state slot or ``'w'`` (the param);
        ``s`` maps ``w``, ``g`` (the gradient), ``lr``, each state slot, each step scalar
        and ``new_<slot>`` (the value a store before this one wrote) to SymPy symbols, and
        each hyper-parameter to its value. ``flush(x)`` is ``x``, or 0 where ``|x|`` is
        below the dtype's smallest normal number: a decaying state (a moment of a unit
        whose gradient stays 0) would otherwise sink into subnormals and stay there
        (0.9·m rounds back to m), which makes every later step several times slower;
        normal values are unchanged.
    """

    hyper: dict
    states: tuple[str, ...]
    step_scalars: tuple[tuple[str, str], ...]
    update: Callable


OPTIMIZERS = {
    "sgd": OptimizerRule({}, (), (), lambda s, sqrt, flush: [("w", s["w"] - s["lr"] * s["g"])]),
    "momentum": OptimizerRule(
        {"momentum": 0.9}, ("v",), (),
        lambda s, sqrt, flush: [("v", flush(s["momentum"] * s["v"] + s["g"])),
                                ("w", s["w"] - s["lr"] * s["new_v"])]),
    "adam": OptimizerRule(
        {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v"),
        (("c1", "1.0 / (1.0 - {beta1!r} ** {t})"), ("c2", "1.0 / (1.0 - {beta2!r} ** {t})")),
        lambda s, sqrt, flush: [
            ("m", flush(s["beta1"] * s["m"] + (1 - s["beta1"]) * s["g"])),
            ("v", flush(s["beta2"] * s["v"] + (1 - s["beta2"]) * s["g"] * s["g"])),
            ("w", s["w"] - s["lr"] * (s["new_m"] * s["c1"])
             / (sqrt(s["new_v"] * s["c2"]) + s["eps"]))]),
}


@dataclass(frozen=True)
class Optimizer:
    """An optimizer of :data:`OPTIMIZERS` and its hyper-parameters."""

    name: str
    hyper: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, spec) -> Optimizer:
        """Accept 'sgd' | 'momentum' | 'adam' or a dict {'name': ..., hyper: value}."""
        if spec is not None and not isinstance(spec, (str, dict)):
            raise GradcError(f"optimizer: expected a name or a dict, got {type(spec).__name__}")
        spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "sgd"})
        name = spec.pop("name", "sgd")
        if not isinstance(name, str) or name not in OPTIMIZERS:
            raise GradcError(f"unknown optimizer '{name}': one of {', '.join(OPTIMIZERS)}")
        unknown = set(spec) - set(OPTIMIZERS[name].hyper)
        if unknown:
            raise GradcError(f"optimizer {name}: unknown hyper-parameter(s) "
                             f"{', '.join(sorted(unknown))}; accepted: "
                             f"{', '.join(OPTIMIZERS[name].hyper) or 'none'}")
        for k, v in spec.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise GradcError(f"optimizer {name}: {k} must be a number, got {v!r}")
        hyper = {**OPTIMIZERS[name].hyper, **{k: float(v) for k, v in spec.items()}}
        return cls(name, tuple(sorted(hyper.items())))

    @property
    def rule(self) -> OptimizerRule:
        """The optimizer's row of :data:`OPTIMIZERS`."""
        return OPTIMIZERS[self.name]

    @property
    def states(self) -> tuple[str, ...]:
        """Per-param state arrays ('v' for momentum, 'm' and 'v' for adam)."""
        return self.rule.states

    def step_scalars(self, t: str = "t") -> list[tuple[str, str]]:
        """(name, Python expression in the variable ``t``, the 1-based step count) of
        each per-step scalar, with this optimizer's hyper-parameter values filled in."""
        return [(name, text.format(t=t, **dict(self.hyper)))
                for name, text in self.rule.step_scalars]




@dataclass
class Options:
    """Compile options (SPEC §2); ``key()`` is what the cache hashes."""

    target: str = "cpu"
    dtype: str | None = None
    wrt: tuple[str, ...] = ()
    optimizer: Optimizer = Optimizer("sgd", ())
    cache: bool = True
    parallel: bool = False

    @classmethod
    def make(cls, target="cpu", dtype=None, wrt=(), optimizer="sgd", cache=True,
             parallel=False) -> Options:
        """Validate user-given options."""
        if target not in TARGETS:
            raise GradcError(f"unknown target '{target}': one of {', '.join(TARGETS)}")
        if parallel and not TARGETS[target].parallel:
            raise GradcError(f"parallel=True is a CPU option; the {target} target takes "
                             "no parallel option")
        if dtype is not None and dtype not in FLOAT:
            raise GradcError(f"unknown dtype '{dtype}': one of {', '.join(FLOAT)}")
        if isinstance(wrt, str):
            wrt = tuple(w for w in wrt.split(",") if w)
        bad = [w for w in wrt if not isinstance(w, str)]
        if bad:
            raise GradcError(f"wrt: expected input names, got {bad[0]!r}")
        twice = sorted({w for w in wrt if list(wrt).count(w) > 1})
        if twice:
            raise GradcError(f"wrt: '{twice[0]}' is given more than once")
        return cls(target, dtype, tuple(wrt), Optimizer.parse(optimizer), bool(cache),
                   bool(parallel))

    def key(self) -> dict:
        return {"target": self.target, "dtype": self.dtype, "wrt": list(self.wrt),
                "optimizer": [self.optimizer.name, list(self.optimizer.hyper)],
                "cache": self.cache, "parallel": self.parallel}
