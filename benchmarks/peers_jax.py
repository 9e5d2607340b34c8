"""JAX peers: a whole training step under one ``jax.jit``.

The step is ``value_and_grad`` of the mean cross-entropy plus the SGD update, on a parameter
pytree (a dict), compiled once; the old parameter buffers are donated so XLA may update them in
place. Every timed call ends with ``jax.block_until_ready`` on the loss and the new parameters, so
asynchronous dispatch never hides work. Threads: XLA's CPU default (its thread pool is sized to
the cores, like PyTorch's); this module sets no flags. Labels are int32 (JAX's default integer
without x64); the values equal the int64 labels the other sides get.

``jax`` is imported inside the functions, so a missing install only marks the JAX rows.
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.workloads import GELU_C0, GELU_C1, epoch_batches


def threads() -> str:
    """JAX's version and devices, for the report header."""
    import jax

    return f"jax {jax.__version__}: devices {[str(d) for d in jax.devices()]}"


def _loss_fn(activation: str):
    import jax
    import jax.numpy as jnp

    act = jax.nn.relu if activation == "relu" else jnp.tanh

    def loss(params, x, y):
        n_layers = len(params) // 2
        h = x
        for i in range(1, n_layers):
            h = act(h @ params[f"W{i}"] + params[f"b{i}"])
        logits = h @ params[f"W{n_layers}"] + params[f"b{n_layers}"]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss


def _jit_step(activation: str, gather: bool):
    import jax

    loss = _loss_fn(activation)

    def step(params, x, y, lr):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return value, jax.tree_util.tree_map(lambda p, d: p - lr * d, params, grads)

    def step_gather(params, xs, ys, idx, lr):
        return step(params, xs[idx], ys[idx], lr)

    return jax.jit(step_gather if gather else step, donate_argnums=0)


class JaxMLP:
    """Holds the current parameter pytree of a JAX-trained MLP (a copy of the shared init)."""

    def __init__(self, params: dict[str, np.ndarray]):
        import jax.numpy as jnp

        self.params_tree = {k: jnp.array(v, copy=True) for k, v in params.items()}

    def params(self) -> dict[str, np.ndarray]:
        """A NumPy copy of the current parameters."""
        return {k: np.array(v) for k, v in self.params_tree.items()}


def mlp_trainer(params: dict[str, np.ndarray], activation: str, x: np.ndarray, y: np.ndarray):
    """A :class:`JaxMLP` and a ``step(lr) -> loss`` on the fixed batch ``x, y``."""
    import jax
    import jax.numpy as jnp

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    model = JaxMLP(params)
    step_jit = _jit_step(activation, gather=False)
    xj, yj = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    def step(lr: float):
        loss, model.params_tree = step_jit(model.params_tree, xj, yj, np.float32(lr))
        jax.block_until_ready((loss, model.params_tree))
        return loss

    return model, step


def epoch_trainer(params: dict[str, np.ndarray], activation: str, xs: np.ndarray,
                  ys: np.ndarray, batch: int):
    """A :class:`JaxMLP` and ``epoch(lr, seed)``: a Python loop of jitted steps.

    The data stays on the device; each step gathers its batch inside the jitted function from
    an index array (NumPy shuffle from ``seed``, as for the other sides). The short last batch
    compiles once more during warm-up.
    """
    import jax
    import jax.numpy as jnp

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    model = JaxMLP(params)
    step_jit = _jit_step(activation, gather=True)
    xj, yj = jnp.asarray(xs), jnp.asarray(ys.astype(np.int32))

    def epoch(lr: float, seed: int):
        lr32 = np.float32(lr)
        loss = None
        for idx in epoch_batches(len(xs), batch, seed):
            loss, model.params_tree = step_jit(model.params_tree, xj, yj,
                                               idx.astype(np.int32), lr32)
        jax.block_until_ready((loss, model.params_tree))
        return loss

    return model, epoch


def gelu_fb(z: np.ndarray, g: np.ndarray):
    """A callable returning ``(out, dz)`` from one jitted ``jax.vjp`` of the tanh-GELU formula."""
    import jax
    import jax.numpy as jnp

    def gelu(v):
        return 0.5 * v * (1.0 + jnp.tanh(GELU_C0 * (v + GELU_C1 * v ** 3)))

    @jax.jit
    def fb(v, cot):
        out, pullback = jax.vjp(gelu, v)
        return out, pullback(cot)[0]

    zj, gj = jnp.asarray(z), jnp.asarray(g)

    def run():
        return jax.block_until_ready(fb(zj, gj))

    return run
