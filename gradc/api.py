"""The Python API (SPEC §2): ``compile``, ``compile_string`` and :class:`Model`."""

from __future__ import annotations

import builtins
import tempfile
from pathlib import Path

from gradc.errors import GradcError
from gradc.options import Options
from gradc.entries import ENTRIES, missing_reason
from gradc.runtime.cache import cache_key, module_path, write_atomic
from gradc.runtime.loader import load_module, module_from_text
from gradc.source import Source


class Model:
    """A compiled model: the generated module's functions with the optimizer state kept.

    Attributes:
        name: the model's name.
        source: the generated module's source text.
        path: the generated module's file.
        signature: names, dtypes and shapes of params, inputs and outputs.
        warnings: compile-time warnings (rendered strings).
        graph: the forward graph (for ``gradc show`` and ``gradc graph``), lowered lazily.
    """

    def __init__(self, module, path: Path, model_source: Source, options: Options):
        self.module, self.path = module, path
        self.model_source, self.options = model_source, options
        self.source = path.read_text(encoding="utf-8")
        self.signature = module.SIGNATURE
        self.name = self.signature["model"]
        self.warnings = list(module.WARNINGS)
        self.state: dict = {}
        self._graph = None
        self._device_ok = options.target != "cuda"  # checked once, at the first call

    @property
    def graph(self):
        """The forward graph (train mode), lowered on first use."""
        if self._graph is None:
            from gradc.pipeline import front
            self._graph = front(self.model_source, self.options)[0]
        return self._graph

    def to_host(self, value):
        """NumPy copies of device arrays (target cuda), recursively through dicts; NumPy
        values are returned as they are."""
        to_host = getattr(self.module, "to_host", None)
        return to_host(value) if to_host else value

    def supports(self, fn: str) -> bool:
        """Whether the model has the function ``fn`` (an entry of
        :data:`gradc.entries.ENTRIES`): a model without a loss has no loss_and_grad;
        train_epoch needs inputs that share their leading (batch) dim."""
        return hasattr(self.module, fn)

    def _require_device(self) -> None:
        """For target 'cuda': raise a :class:`GradcError` unless a CUDA GPU (or Numba's
        CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``) can run the kernels. Checked at the
        first call that needs the device, not at compile time, so that the module can be
        generated (and its PTX compiled) on a machine without a GPU."""
        if self._device_ok:
            return
        from numba import cuda
        if not cuda.is_available():
            raise GradcError("target 'cuda' needs an NVIDIA GPU with its driver, and none is "
                             "usable here; use target 'cpu', or set NUMBA_ENABLE_CUDASIM=1 "
                             "to run the CUDA kernels on Numba's (slow) simulator")
        self._device_ok = True

    def _need(self, fn: str):
        if not self._device_ok:
            self._require_device()
        found = getattr(self.module, fn, None)
        if found is None:
            raise GradcError(f"model '{self.name}' has no {fn}(): "
                             f"{missing_reason(self.signature, ENTRIES[fn])}")
        return found

    def init_params(self, seed: int = 0) -> dict:
        """Fresh params drawn with ``seed``: dict name -> C-contiguous array."""
        self._require_device()
        return self.module.init_params(seed)

    def save_params(self, params: dict, path) -> None:
        """Write params to an .npz file (one array per param name)."""
        self.module.save_params(params, path)

    def load_params(self, path) -> dict:
        """Read params from an .npz file, checking names, shapes and dtypes."""
        self._require_device()
        return self.module.load_params(path)

    def reset_optimizer(self) -> None:
        """Forget the optimizer state (momentum, Adam moments, step count)."""
        self.state.clear()

    def __reduce__(self):
        """Pickle as the generated module's text, the model source, the options and the
        state: a process that has never seen the model (and has an empty cache) rebuilds
        it without running the compiler."""
        return _rebuild_model, (self.module._KEY, self.source, self.model_source.text,
                                self.model_source.filename, self.options,
                                {k: v if isinstance(v, (int, float)) else self.to_host(v)
                                 for k, v in self.state.items()})

    def __repr__(self) -> str:
        return f"<gradc.Model {self.name!r} from {self.path}>"


def _entry_method(entry):
    """The Model method of a registry entry: the generated function, called with the
    model's own state unless ``state=`` is given (pass one per thread to train from
    several threads at once)."""
    def method(self, params, *args, **kwargs):
        kwargs.setdefault("state", self.state)
        return self._need(entry.name)(params, *args, **kwargs)
    method.__name__ = method.__qualname__ = entry.name
    method.__doc__ = f"{entry.name}(params, {entry.params}, **inputs): {entry.doc}"
    return method


for _entry in ENTRIES.values():
    setattr(Model, _entry.name, _entry_method(_entry))


def _rebuild_model(key: str, text: str, model_text: str, filename: str, options: Options,
                   state: dict) -> Model:
    """A pickled :class:`Model` in this process (see ``Model.__reduce__``)."""
    module = module_from_text(key, text)
    model = Model(module, Path(module.__file__), Source(model_text, filename), options)
    model.state.update(state)
    return model


def compile(path, **options) -> Model:  # noqa: A001 - the SPEC's name
    """Compile the model file at ``path``; options as :meth:`Options.make`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GradcError(f"{path}: cannot read the model file: {e}") from None
    return _compile(Source(text, str(path)), options)


def compile_string(text: str, name: str = "model", **options) -> Model:
    """Compile model source text; ``name`` is used as the file name in messages."""
    filename = name if name.endswith(".grad") else f"{name}.grad"
    return _compile(Source(text, filename), options)


def _compile(source: Source, options: dict) -> Model:
    opts = Options.make(**options)
    key = cache_key(source.text, source.filename, opts.key())
    root = None if opts.cache else Path(tempfile.mkdtemp(prefix="gradc_"))
    path = module_path(key, root)
    if not path.exists():
        from gradc.pipeline import compile_source  # the compiler proper: only on a miss
        text, _, _ = compile_source(source, opts, key)
        builtins.compile(text, str(path), "exec")  # never cache a module that cannot import
        write_atomic(path, text)
    module = load_module(path, f"gradc_gen_{key[:16]}")
    return Model(module, path, source, opts)
