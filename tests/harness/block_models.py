"""Random models written with blocks, nested instances and ``repeat``, and their
hand-inlined twins (tests/ir/test_blocks.py compares the two; tests/codegen/cpu/
test_outline.py and the blocks fuzzer compile them with and without the CPU's shared
block functions, :func:`shared_and_inlined`)."""

from __future__ import annotations

import numpy as np


def perturbed(params: dict, seed: int) -> dict:
    """The params plus noise, so that ones/zeros initialisers are not special."""
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}


ACTS = ("tanh", "relu", "sigmoid", "silu")


def shared_and_inlined(text: str, name: str):
    """The CPU model of ``text`` (Adam, float64, no cache) with its recurring runs of
    kernels shared as one function each (:mod:`gradc.codegen.cpu.outline`), and the same
    model with them printed inline (its text one comment longer: a module is imported
    under its key, and the same key would import the first build's functions again)."""
    import gradc
    from gradc.codegen.cpu import outline

    def build(source: str):
        return gradc.compile_string(source, name=name, dtype="f64", optimizer="adam",
                                    cache=False)
    shared = build(text)
    weight, outline.MIN_WEIGHT = outline.MIN_WEIGHT, 10 ** 9
    try:
        inlined = build(text + "# inlined\n")
    finally:
        outline.MIN_WEIGHT = weight
    assert shared.module is not inlined.module
    return shared, inlined


def random_case(seed: int) -> tuple[str, str, dict]:
    """A random model with blocks (random layers, lets, nested instances, repeat) and its
    hand-inlined twin; returns (block source, hand source, block param -> hand param)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    mult = int(rng.integers(1, 3))
    act = str(rng.choice(ACTS))
    norm = bool(rng.integers(2))
    inner_reps = int(rng.integers(1, 3))
    outer_reps = int(rng.integers(1, 4))
    block = f"""
block cell(k) {{
    {"layer ln = layernorm(k)" if norm else ""}
    layer up = dense(k -> {mult} * k)
    layer down = dense({mult} * k -> k)
    fn forward(h) {{
        u = {act}(up({"ln(h)" if norm else "h"}))
        return h + down(u)
    }}
}}
block stack(k) {{
    layer cells = repeat(cell(k), {inner_reps})
    param g : f64[k] ~ ones
    fn forward(h) = g * (h |> cells)
}}
input x : f64[B, {n}]
layer net = repeat(stack({n}), {outer_reps})
loss = mean(net(x) ^ 2)
"""
    hand, mapping, calls = [f"input x : f64[B, {n}]"], {}, []
    for i in range(outer_reps):
        for j in range(inner_reps):
            pre, path = f"c{i}_{j}", f"net.{i}.cells.{j}"
            layers = (["ln"] if norm else []) + ["up", "down"]
            if norm:
                hand.append(f"layer {pre}_ln = layernorm({n})")
                mapping.update({f"{path}.ln.gamma": f"{pre}_ln.gamma",
                                f"{path}.ln.beta": f"{pre}_ln.beta"})
            hand += [f"layer {pre}_up = dense({n} -> {mult * n})",
                     f"layer {pre}_down = dense({mult * n} -> {n})",
                     f"fn {pre}(h) = h + {pre}_down({act}({pre}_up("
                     + (f"{pre}_ln(h)" if norm else "h") + ")))"]
            for lay in layers[-2:]:
                mapping.update({f"{path}.{lay}.W": f"{pre}_{lay}.W",
                                f"{path}.{lay}.b": f"{pre}_{lay}.b"})
            calls.append(pre)
        hand.append(f"param g{i} : f64[{n}] ~ ones")
        mapping[f"net.{i}.g"] = f"g{i}"
        calls.append(f"g{i}")
    expr = "x"
    for c in calls:
        expr = f"{c} * ({expr})" if c.startswith("g") else f"{c}({expr})"
    hand.append(f"loss = mean(({expr}) ^ 2)")
    return block, "\n".join(hand) + "\n", mapping
