"""``examples/tiny_gpt.grad``: two pre-norm causal-attention blocks learn char_rnn's text.

On the numpy target (no Numba compile): the params and shapes; a causal model's logits at
t do not depend on the characters after t; and Adam's ``train_step`` on next-character
prediction of ``"hello world, gradc rnn! " * 40`` brings the held-out loss from about
log 16 to a small fraction of it, with the next character predicted right wherever the
last two characters determine it (from position 2 on).
"""

from __future__ import annotations

import functools
import math

import numpy as np

import gradc
from tests.harness.paths import EXAMPLES

EXAMPLE = EXAMPLES / "tiny_gpt.grad"
TEXT = "hello world, gradc rnn! " * 40


@functools.cache
def model() -> gradc.Model:
    return gradc.compile(EXAMPLE, target="numpy", optimizer="adam")


def char_data(seq: int, seed: int, n: int) -> dict:
    """``n`` windows of ``seq`` character ids of TEXT and the ids that follow each."""
    vocab = sorted(set(TEXT))
    ids = np.array([vocab.index(c) for c in TEXT], np.int64)
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq - 1, n)
    return {"chars": np.stack([ids[s:s + seq] for s in starts]),
            "next": np.stack([ids[s + 1:s + seq + 1] for s in starts])}


def test_params_and_shapes():
    m = model()
    p = m.init_params(0)
    want = {"embed.W": (16, 32), "lnf.gamma": (32,), "lnf.beta": (32,), "head.W": (32, 16),
            "head.b": (16,)}
    for b in "12":
        want.update({f"ln{b}{s}.{w}": (32,) for s in "ab" for w in ("gamma", "beta")})
        want.update({f"att{b}.W{c}": (32, 32) for c in "qkvo"})
        want.update({f"fc{b}a.W": (32, 64), f"fc{b}a.b": (64,), f"fc{b}b.W": (64, 32),
                     f"fc{b}b.b": (32,)})
    assert {k: v.shape for k, v in p.items()} == want
    assert m.forward(p, chars=char_data(7, 0, 3)["chars"])["logits"].shape == (3, 7, 16)


def test_logits_at_t_ignore_later_characters():
    m = model()
    p = m.init_params(1)
    chars = char_data(9, 1, 4)["chars"]
    later = chars.copy()
    later[:, 5:] = (later[:, 5:] + 3) % 14
    a, b = (m.forward(p, chars=c)["logits"] for c in (chars, later))
    assert np.array_equal(a[:, :5], b[:, :5]) and not np.allclose(a[:, 5:], b[:, 5:])


def test_learns_the_text():
    m = model()
    m.reset_optimizer()
    p = m.init_params(0)
    data, test = char_data(16, 2, 256), char_data(16, 3, 64)
    before = m.loss(p, **test)
    rng = np.random.default_rng(0)
    for _ in range(60):
        idx = rng.choice(256, 16, replace=False)
        m.train_step(p, lr=0.01, **{k: np.ascontiguousarray(v[idx]) for k, v in data.items()})
    after = m.loss(p, **test)
    assert before > 0.7 * math.log(16), before
    assert after < 0.1 * math.log(16), (before, after)
    pred = np.argmax(m.forward(p, chars=test["chars"])["logits"], axis=-1)
    assert np.mean(pred[:, 2:] == test["next"][:, 2:]) > 0.95
