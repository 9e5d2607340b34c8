"""What each construct of the generated CPU kernels costs Numba to compile:
``python -m benchmarks.compile_constructs``.

For each construct (a loop nest, a workspace view, a slice, a reshape, a product, a label
check that raises, ...), a module with one function holding ``--sites`` copies of it is
written and its function compiled (``nopython``, the kernels' flags: ``error_model='numpy'``,
fastmath, no bounds checks); the CPU seconds of that compile less those of the same
function with no site, over ``--sites``, are the construct's cost per use. Minimum over
``--repeats`` (min-max shown); each repeat compiles every construct once, in turn, in one
process (Numba's own start is paid before the first). Check that the machine is otherwise
idle (``uptime``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time

import numpy as np

HEADER = '''
import numba as nb
import numpy as np


@nb.njit(["float32[:, ::1](float32[::1], int64, UniTuple(int64, 2))"], nogil=True,
         boundscheck=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _ws_view(ws, offset, shape):
    n = 1
    for d in shape:
        n *= d
    return ws[offset:offset + n].reshape(shape)


_JIT = dict(nogil=True, error_model="numpy", boundscheck=False, no_cfunc_wrapper=True,
            fastmath={"reassoc", "contract", "arcp", "nsz", "afn"})
'''

#: construct -> one site's code ({i}: the site's number; a, b, o: [4, 4] float32 arrays,
#: ws: 1000 float32, y: 4 int64 labels, n = 4); each site touches its own 48 elements of ws
CONSTRUCTS = {
    "1-D loop, empty body": "for i0 in range(n):\n        acc += {i}.0",
    "2-D loop, empty body": "for i0 in range(n):\n        for i1 in range(n):\n"
                            "            acc += {i}.0",
    "2-D loop over 3 arrays": "for i0 in range(n):\n        for i1 in range(n):\n"
                              "            o[i0, i1] = a[i0, i1] * b[i1, i0] + {i}.0",
    "1-D loop over 3 workspace slices":
        "a{i} = ws[{i} * 48:{i} * 48 + n * n]\n    b{i} = ws[{i} * 48 + 16:{i} * 48 + 16 + n * n]"
        "\n    c{i} = ws[{i} * 48 + 32:{i} * 48 + 32 + n * n]\n    for i0 in range(n * n):\n"
        "        c{i}[i0] = a{i}[i0] * b{i}[i0] + {i}.0",
    "the same loop indexing ws directly":
        "for i0 in range(n * n):\n        ws[{i} * 48 + 32 + i0] = ws[{i} * 48 + i0] * "
        "ws[{i} * 48 + 16 + i0] + {i}.0",
    "2-D loop over 3 _ws_view views":
        "a{i} = _ws_view(ws, {i} * 48, (n, n))\n    b{i} = _ws_view(ws, {i} * 48 + 16, (n, n))"
        "\n    c{i} = _ws_view(ws, {i} * 48 + 32, (n, n))\n    for i0 in range(n):\n"
        "        for i1 in range(n):\n"
        "            c{i}[i0, i1] = a{i}[i0, i1] * b{i}[i0, i1] + {i}.0",
    "the same loop indexing ws directly (2-D)":
        "for i0 in range(n):\n        for i1 in range(n):\n"
        "            ws[{i} * 48 + 32 + i0 * n + i1] = ws[{i} * 48 + i0 * n + i1] * "
        "ws[{i} * 48 + 16 + i0 * n + i1] + {i}.0",
    "workspace slice": "s{i} = ws[{i}:{i} + n]\n    s{i}[0] = 1.0",
    "_ws_view call": "s{i} = _ws_view(ws, {i}, (n, n))\n    s{i}[0, 0] = 1.0",
    ".reshape": "s{i} = a.reshape((n * n,))\n    s{i}[0] = 1.0",
    "np.empty": "s{i} = np.empty((n,), np.float32)\n    s{i}[0] = 1.0\n    acc += s{i}[1]",
    "fill [:] = 0": "o[:] = 0.0",
    "np.dot(a, b, out)": "np.dot(a, b, o)",
    "np.dot(a.T, b, out)": "np.dot(a.T, b, o)",
    "label check loop (raise)": "for i0 in range(n):\n        c_ = y[i0]\n"
                                "        if c_ < 0 or c_ >= {i} + 1:\n"
                                "            raise ValueError('y: a label is outside')\n"
                                "        o[i0, 0] = a[i0, c_]",
    "one statement, 3 reads/writes": "o[1, 2] = a[1, 3] * b[2, 1] + {i}.0",
}


def _module(folder: str, name: str, site: str, sites: int):
    body = "\n    ".join(site.format(i=i) for i in range(sites)) if site else "pass"
    text = HEADER + f"\n\n@nb.njit(**_JIT)\ndef f(a, b, o, ws, y, n):\n    acc = 0.0\n" \
        f"    {body}\n    return acc\n"
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile_s(folder: str, name: str, site: str, sites: int) -> float:
    module = _module(folder, name, site, sites)
    a = np.ones((4, 4), np.float32)
    args = (a, a.copy(), a.copy(), np.ones(1000, np.float32), np.zeros(4, np.int64), 4)
    t = time.process_time()
    module.f(*args)
    return time.process_time() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compile_constructs",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    folder = tempfile.mkdtemp()
    times: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for k, (name, site) in enumerate({"(no site)": "", **CONSTRUCTS}.items()):
            times.setdefault(name, []).append(_compile_s(folder, f"m{r}_{k}", site, args.sites))
    base = min(times.pop("(no site)"))
    print(f"compile ms per site ({args.sites} sites, min (min-max) of {args.repeats}):")
    for name, ts in times.items():
        per = [(t - base) / args.sites * 1e3 for t in ts]
        print(f"  {name:44s} {min(per):7.1f} ({min(per):.1f}-{max(per):.1f})")


if __name__ == "__main__":
    main()
