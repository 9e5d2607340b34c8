"""Ctrl-C during ``gradc train``: deferred to the loop's safe points.

Python's default SIGINT handler raises :class:`KeyboardInterrupt` at whatever bytecode runs
when the signal arrives. Inside Numba's dispatcher that turns into ``SystemError:
CPUDispatcher(...) returned a result with an exception set``; halfway through ``np.savez``
it leaves a truncated file. So once training has started, ``gradc train`` runs under
:class:`DeferredInterrupt`: the SIGINT handler only records the request, the loop polls it
after every compiled call (each ``train_epoch`` chunk, ``train_step`` and evaluation chunk)
and stops there by raising :class:`Interrupted`, and the command then saves the finished
epochs and exits with code 130. A compiled kernel cannot be stopped mid-call anyway (Python
runs signal handlers between bytecodes), so deferring costs no latency. Further Ctrl-Cs are
recorded too, so they never cut the saving short. While compiling, the same handler raises
KeyboardInterrupt (a Ctrl-C stops the compile at once) and records it, which catches the
Ctrl-Cs whose KeyboardInterrupt Numba swallows (in its ctypes callbacks).
"""

from __future__ import annotations

import signal
import sys
import threading


class Interrupted(Exception):
    """Training stopped at a safe point because Ctrl-C was pressed.

    The params and the optimizer state are those at the end of the last epoch in the
    history: an epoch cut short is rolled back.

    Attributes:
        epoch: the epoch that was running (or about to start) and is not in the history.
        partial: whether that epoch had begun (and was rolled back).
    """

    def __init__(self, epoch: int, partial: bool):
        super().__init__(f"interrupted in epoch {epoch}")
        self.epoch, self.partial = epoch, partial


class DeferredInterrupt:
    """A context manager that replaces the SIGINT handler by one that counts the signals,
    and puts the previous handler back on exit.

    With ``defer`` true the handler does nothing else: calling the object (or reading
    :attr:`requested`) says whether a SIGINT came, so it can be the ``stop`` callable of
    :func:`gradc.training.loop.fit`. With ``defer`` false (while compiling, where a Ctrl-C
    should stop at once) it also raises KeyboardInterrupt, as Python's default handler
    does; the count still shows a Ctrl-C whose KeyboardInterrupt was swallowed (Numba's
    ctypes callbacks cannot pass it on: Python reports it as "Exception ignored", which
    the ``sys.unraisablehook`` set here keeps quiet, and carries on). ``defer`` may be
    switched on inside the ``with``. Outside the main thread, where Python cannot set
    signal handlers, it changes nothing (a Ctrl-C then raises KeyboardInterrupt as usual,
    which the loop also turns into :class:`Interrupted`).
    """

    def __init__(self, defer: bool = True) -> None:
        self.defer = defer
        self.count = 0
        self._previous = None
        self._hook = sys.unraisablehook
        self._installed = False

    def _record(self, signum, frame) -> None:
        # Nothing else here: the handler runs between two bytecodes of whatever the main
        # thread is doing (perhaps writing to stderr), so it must not print.
        self.count += 1
        if not self.defer:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        """True once a SIGINT has arrived."""
        return self.count > 0

    def __call__(self) -> bool:
        return self.count > 0

    def _unraisable(self, info) -> None:
        # A KeyboardInterrupt that a callback could not pass on (Numba's ctypes callbacks):
        # it is counted already, and "Exception ignored ... Traceback" would only alarm.
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            return
        self._hook(info)

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._record)
            self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
            self._installed = True
        return self

    def __exit__(self, *exc) -> bool:
        if self._installed:
            previous = self._previous
            # None: a handler that was not set from Python; the default is the best guess.
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None
                          else previous)
            sys.unraisablehook = self._hook
            self._installed = False
        return False


def caused_by_interrupt(exc: BaseException | None) -> bool:
    """True for a KeyboardInterrupt, or for an exception raised because of one: Numba's
    ``SystemError`` (a compiled call "returned a result with an exception set") has the
    KeyboardInterrupt as its cause, and so may an error raised while it propagated."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def forget_unhandled_interrupt() -> None:
    """Call after handling a KeyboardInterrupt, so that the exit code stands.

    CPython notes a KeyboardInterrupt that leaves code run by ``exec`` of a string (Numba
    compiles through such code) as unhandled, even when a caller catches it later; under
    ``python -m`` the interpreter then ends by killing itself with SIGINT (``Py_RunMain``)
    instead of exiting with the code it was given. The next successful ``exec`` of a string
    clears that note.
    """
    exec("pass")  # noqa: S102 - a constant string: see the docstring
