"""The Python API (SPEC §2): ``compile``, ``compile_string`` and :class:`Model`.

On a cold cache a CPU model starts tiered (:mod:`gradc.runtime.tiers`): its entries run on
the numpy target's module at once while Numba compiles their kernels in background
processes, and each switches to its compiled kernels between calls as soon as they are
ready. ``wait=True`` (or ``GRADC_TIERED=0`` in the environment) keeps the blocking
behaviour: the CPU module alone, its kernels compiled in this process at their first call.
"""

from __future__ import annotations

import builtins
import dataclasses
import tempfile
from pathlib import Path

from gradc.codegen.target import TARGETS
from gradc.errors import GradcError
from gradc.options import Options
from gradc.entries import ENTRIES, missing_reason
from gradc.runtime.cache import base_name, cache_key, module_path, read_entry, store_entry
from gradc.runtime.loader import load_module, module_from_text, module_name
from gradc.runtime.tiers import Tiers, enabled_by_default
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
        module: the generated module serving calls now (for a tiered model the numpy
            target's until the CPU module is loaded, then the CPU module).

    Tiered models (see the module docstring) say per entry which tier runs it
    (:meth:`tier`), can wait for their background compiles (:meth:`wait_for_kernels`)
    and end them (:meth:`close`).
    """

    def __init__(self, module, path: Path, model_source: Source, options: Options,
                 tiers: Tiers | None = None):
        self._module, self._tiers, self.path = module, tiers, path
        self.model_source, self.options = model_source, options
        self.source = path.read_text(encoding="utf-8")
        self.signature = self.module.SIGNATURE
        self.name = self.signature["model"]
        self.warnings = [_typed_path(w, model_source.filename) for w in self.module.WARNINGS]
        self.state: dict = {}
        self._graph = None
        self._device_ok = not TARGETS[options.target].device  # checked at the first call

    @property
    def module(self):
        """The generated module serving calls now."""
        return self._tiers.module if self._tiers is not None else self._module

    @property
    def tiered(self) -> bool:
        """Whether the model started tiered (NumPy first, Numba kernels from background
        compiles)."""
        return self._tiers is not None

    def tier(self, fn: str) -> str:
        """Which tier runs entry ``fn`` now: 'numba', 'numpy' or 'cuda'."""
        return self._tiers.tier(fn) if self._tiers is not None else \
            TARGETS[self.options.target].tier

    def pending(self, fn: str) -> str | None:
        """For an entry on the NumPy tier of a tiered model, what will bring it to
        Numba: 'loading' (a warm cache: its kernels are being loaded) or 'compiling' (its
        background compile); None otherwise."""
        return self._tiers.pending(fn) if self._tiers is not None else None

    def wait_for_kernels(self, timeout: float | None = None) -> bool:
        """Wait until the background compiles started so far have finished and their
        entries run compiled kernels; False when ``timeout`` seconds passed first (always
        True for a model that is not tiered)."""
        return self._tiers.wait(timeout) if self._tiers is not None else True

    def close(self) -> None:
        """End this model's background compiles now (its entries stay on the NumPy tier
        until they are called again). Running compiles are otherwise left to finish when
        the process exits, so that the next run finds the kernels cached."""
        if self._tiers is not None:
            self._tiers.close()

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

    def to_device(self, array):
        """``array`` (a NumPy array) where the kernels read it: a device copy for a device
        target (cuda), the array itself otherwise."""
        return self.module._fresh(array)

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
        found = self._tiers.function(fn) if self._tiers is not None else \
            getattr(self._module, fn, None)
        if found is None:
            raise GradcError(f"model '{self.name}' has no {fn}(): "
                             f"{missing_reason(self.signature, ENTRIES[fn])}")
        return found

    def init_params(self, seed: int = 0) -> dict:
        """Fresh params drawn with ``seed``: dict name -> C-contiguous array."""
        self._require_device()
        return self.module.init_params(seed)

    def init_state(self, params: dict | None = None) -> dict:
        """A fresh state: step count and noise counter 0, optimizer slots zero, running
        statistics at their inits (on the device for target cuda); what an empty
        ``state`` dict is filled with on first use. ``params`` is not needed."""
        self._require_device()
        return self.module.init_state()

    def save_params(self, params: dict, path, *, state: dict | None = None) -> None:
        """Write params to an .npz file (one array per param name) with the running
        statistics of ``state`` (default: the model's own) as ``buffer:NAME`` arrays."""
        self.module.save_params(params, path, state=self.state if state is None else state)

    def load_params(self, path, *, state: dict | None = None) -> dict:
        """Read params from an .npz file, checking names, shapes and dtypes; the running
        statistics saved with them go into ``state`` (default: the model's own)."""
        self._require_device()
        return self.module.load_params(path, state=self.state if state is None else state)

    def reset_optimizer(self) -> None:
        """Forget the optimizer state (momentum, Adam moments, step count)."""
        self.state.clear()

    def __reduce__(self):
        """Pickle as the generated module's text, the model source, the options and the
        state: a process that has never seen the model (and has an empty cache) rebuilds
        it without running the compiler."""
        return _rebuild_model, (self._key, self.source, self.model_source.text,
                                self.model_source.filename, self.options,
                                {k: v if isinstance(v, (int, float)) else self.to_host(v)
                                 for k, v in self.state.items()})

    @property
    def _key(self) -> str:
        """The cache key of the module at ``path`` (the CPU one for a tiered model)."""
        return self._tiers.cpu_key if self._tiers is not None else self._module._KEY

    def __repr__(self) -> str:
        return f"<gradc.Model {self.name!r} from {self.path}>"


def _typed_path(warning: str, filename: str) -> str:
    """A warning of the module (rendered under the file's base name, see
    :func:`gradc.pipeline.compile_source`) under the path as the user typed it."""
    base = base_name(filename)
    return filename + warning[len(base):] if warning.startswith(base + ":") else warning


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


def compile(path, *, wait: bool | None = None, **options) -> Model:  # noqa: A001 - SPEC
    """Compile the model file at ``path``; options as :meth:`Options.make`.

    ``wait``: False starts tiered (target cpu, cache on: NumPy at once, Numba kernels
    from background compiles), True blocks as a plain CPU model (kernels compile in this
    process at their first call); None (default): tiered unless ``GRADC_TIERED=0``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GradcError(f"{path}: cannot read the model file: {e}") from None
    return _compile(Source(text, str(path)), options, wait)


def compile_string(text: str, name: str = "model", *, wait: bool | None = None,
                   **options) -> Model:
    """Compile model source text; ``name`` is used as the file name in messages;
    ``wait`` as in :func:`compile`."""
    filename = name if name.endswith(".grad") else f"{name}.grad"
    return _compile(Source(text, filename), options, wait)


def _module_files(source: Source, variants: list[Options]) -> list[tuple[str, Path]]:
    """The key and file of ``source``'s module for each of ``variants`` (options that
    differ only in target, cache or parallel). Missing or damaged modules are generated
    by the compiler proper (one front end and autodiff for all of them) and cached."""
    found, missing = [], []
    for opts in variants:
        key = cache_key(source.text, source.filename, opts.key())
        root = None if opts.cache else Path(tempfile.mkdtemp(prefix="gradc_"))
        found.append([key, module_path(key, root)])
        if read_entry(found[-1][1]) is None:
            missing.append((opts, found[-1]))
    if missing:
        from gradc.pipeline import compile_sources
        texts, _, _ = compile_sources(source, [(opts, item[0]) for opts, item in missing])
        for (_, item), text in zip(missing, texts):
            builtins.compile(text, str(item[1]), "exec")  # never cache what cannot import
            item[1] = store_entry(item[1], text)
    return [tuple(item) for item in found]


def _compile(source: Source, options: dict, wait: bool | None) -> Model:
    opts = Options.make(**options)
    fallback = TARGETS[opts.target].fallback
    tiered = fallback is not None and opts.cache and \
        not (not enabled_by_default() if wait is None else wait)
    if not tiered:
        ((key, path),) = _module_files(source, [opts])
        return Model(load_module(path, module_name(key)), path, source, opts)
    numpy_opts = dataclasses.replace(opts, target=fallback, parallel=False)
    cpu_cached, numpy_cached = (
        read_entry(module_path(cache_key(source.text, source.filename, o.key()))) is not None
        for o in (opts, numpy_opts))
    # a cold cache gets both modules from one compiler run; a warm one runs on NumPy while
    # Numba loads only when the numpy module is cached too (else it would need the compiler)
    (key, path), *numpy_file = _module_files(
        source, [opts] if cpu_cached and not numpy_cached else [opts, numpy_opts])

    def numpy_module():
        ((numpy_key, numpy_path),) = numpy_file or _module_files(source, [numpy_opts])
        return load_module(numpy_path, module_name(numpy_key))
    return Model(None, path, source, opts, Tiers(path, key, numpy_module, bool(numpy_file)))
