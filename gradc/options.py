"""Compile options (SPEC §2) and optimizer settings: light, importable without SymPy."""

from __future__ import annotations

from dataclasses import dataclass

from gradc.errors import GradcError

OPTIMIZERS = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


@dataclass(frozen=True)
class Optimizer:
    """An optimizer and its hyper-parameters (the learning rate is given per call)."""

    name: str
    hyper: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, spec) -> Optimizer:
        """Accept 'sgd' | 'momentum' | 'adam' or a dict {'name': ..., hyper: value}."""
        spec = {"name": spec} if isinstance(spec, str) else dict(spec or {"name": "sgd"})
        name = spec.pop("name", "sgd")
        if name not in OPTIMIZERS:
            raise GradcError(f"unknown optimizer '{name}': one of {', '.join(OPTIMIZERS)}")
        unknown = set(spec) - set(OPTIMIZERS[name])
        if unknown:
            raise GradcError(f"optimizer {name}: unknown hyper-parameter(s) "
                             f"{', '.join(sorted(unknown))}; accepted: "
                             f"{', '.join(OPTIMIZERS[name]) or 'none'}")
        hyper = {**OPTIMIZERS[name], **{k: float(v) for k, v in spec.items()}}
        return cls(name, tuple(sorted(hyper.items())))

    @property
    def states(self) -> tuple[str, ...]:
        """Per-param state arrays ('v' for momentum, 'm' and 'v' for adam)."""
        return {"sgd": (), "momentum": ("v",), "adam": ("m", "v")}[self.name]


TARGETS = ("cpu", "cuda")
DTYPES = ("f32", "f64")


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
        if target == "cuda" and parallel:
            raise GradcError("parallel=True is a CPU option; the cuda target is parallel")
        if dtype is not None and dtype not in DTYPES:
            raise GradcError(f"unknown dtype '{dtype}': one of {', '.join(DTYPES)}")
        if isinstance(wrt, str):
            wrt = tuple(w for w in wrt.split(",") if w)
        return cls(target, dtype, tuple(wrt), Optimizer.parse(optimizer), bool(cache),
                   bool(parallel))

    def key(self) -> dict:
        return {"target": self.target, "dtype": self.dtype, "wrt": list(self.wrt),
                "optimizer": [self.optimizer.name, list(self.optimizer.hyper)],
                "cache": self.cache, "parallel": self.parallel}
