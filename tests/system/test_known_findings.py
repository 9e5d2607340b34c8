"""The fuzzers' known findings.

Unfixed ones are listed in tests/harness/fuzz/known.py, each run here as a strict xfail of its
minimal reproduction: when a fix lands, its test XPASSes (a failure), the entry is deleted
from tests/harness/fuzz/known.py (so that the fuzzers count such inputs as failures again) and its
reproduction becomes a regression test below.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.harness.fuzz.common import check_front
from tests.harness.fuzz.known import KNOWN

import gradc
from gradc.options import Options
from gradc.pipeline import compile_source
from gradc.source import Source


if KNOWN:  # (an empty parameter list would show as a skipped test)
    @pytest.mark.parametrize("finding", [pytest.param(k, id=k.id, marks=pytest.mark.xfail(
        strict=True, reason=f"known fuzz finding: {k.title} ({k.where})")) for k in KNOWN])
    def test_known_finding_is_fixed(finding):
        exec(compile(finding.repro, f"<repro {finding.id}>", "exec"), {})


# ---------------------------------------------------------------- fixed findings
@pytest.mark.parametrize("axes, message", [
    ("4", "transpose: axes (4,) are not a permutation of 2 axes of [3, 4]"),
    ("x", "axes must be a tuple of integer literals"),
    ("1.5", "axes must be a tuple of integer literals"),
])
def test_transpose_with_a_non_tuple_permutation_is_a_located_error(axes, message):
    """Was 'transpose-int-perm-unlocated': ``transpose(x, 4)`` raised 'expected an integer
    here' without a line (the lowered literal has no span)."""
    text = f"input x : f64[3, 4]\noutput o = transpose(x, {axes})\n"
    outcome = check_front(text)
    assert outcome.category == "located-error", outcome
    assert outcome.detail.startswith("fuzz.grad:2:12: error: ") and message in outcome.detail


def test_transpose_with_an_integer_axis_of_a_vector_still_works():
    assert check_front("input x : f64[3]\noutput o = transpose(x, 0)\n").category == "graph"


HVP_CE = ("input x : f64[B, 3]\ninput y : i64[B]\nparam W : f64[3, 4]\n"
          "loss = cross_entropy(x @ W, y)\n")
HVP_HINGE = ("input x : f64[B, 3]\ninput y : i64[B]\nparam W : f64[3, 4]\n"
             "loss = hinge(x @ W, y)\n")


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("text", [HVP_CE, HVP_HINGE], ids=["cross_entropy", "hinge"])
def test_hvp_checks_labels_its_kernels_do_not_read(text, target):
    """Was 'hvp-labels-unchecked': the Hessian of a hinge loss does not depend on the
    labels, so no kernel of hvp read them and labels 4 and -1 were accepted."""
    m = gradc.compile_string(text, name="known_hvp", target=target)
    params = {"W": np.ones((3, 4))}
    x = np.ones((2, 3))
    for bad in ([4, 0], [0, -1]):
        with pytest.raises(ValueError, match=r"y: a label is outside \[0, 4\)"):
            m.hvp(params, {"W": np.ones((3, 4))}, x=x, y=np.array(bad))
    good = m.hvp(params, {"W": np.ones((3, 4))}, x=x, y=np.array([3, 0]))
    assert good["W"].shape == (3, 4)


def test_hvp_checks_labels_computed_from_an_input():
    """A slice of an integer input used as labels is computed and checked in hvp too, as in
    loss (and only the column that is used)."""
    m = gradc.compile_string("input x : f64[B, 3]\ninput y : i64[B, 2]\n"
                             "param W : f64[3, 4]\nloss = hinge(x @ W, y[:, 0])\n",
                             name="known_hvp_slice", target="numpy")
    params, x, vec = {"W": np.ones((3, 4))}, np.ones((2, 3)), {"W": np.ones((3, 4))}
    for fn, lead in ((m.hvp, (vec,)), (m.loss, ())):
        with pytest.raises(ValueError, match=r"labels: a label is outside \[0, 4\)"):
            fn(params, *lead, x=x, y=np.array([[4, 0], [0, 0]]))
        fn(params, *lead, x=x, y=np.array([[0, 9], [1, -3]]))


def test_hvp_label_check_is_printed_for_every_target():
    """The check is a kernel of the program (``Check``, commented with the labels'
    declaration), printed by each target, in hvp alone: the other programs' kernels read
    and check the labels already."""
    def module(text, filename, target):
        return compile_source(Source(text, filename), Options.make(target=target),
                              "k" * 64)[0]
    for target in ("numpy", "cpu", "cuda"):
        for text, filename in ((HVP_HINGE, "h.grad"), (HVP_CE, "c.grad")):
            out = module(text, filename, target)
            assert "y: a label is outside [0, 4)" in out, target
            kernel = f"# {filename}:2: input y : i64[B]"
            assert out.count(kernel) == (2 if target == "cuda" else 1), (target, filename)


#: a value read at a constant index (``W[0]``) in one kernel and at the loop index in
#: another (``W ^ 2``)
CONST_AND_LOOP_INDEX = """input x : f64[B, 4]
param W : f64[3] ~ constant(0.3)
v = W[0]
output v
loss = sum(v ^ 2) + sum(W ^ 2)
"""


@pytest.mark.parametrize("target", ["cpu", "numpy"])
def test_a_constant_index_and_a_loop_index_are_different_reads(target):
    """Was found by ``python -m tests.harness.fuzz --seed 38`` (model 38000652: hvp of
    ``logsumexp(W, axis=0)[0]`` beside the whole vector, numpy target 0.68 off torch):
    ``Read(W, (0,))`` (loop axis 0) and ``Read(W, (Affine(None, 0),))`` (the constant
    index 0) had one SymPy name, so one kernel read the other's element. The CPU target
    returned a loss of 23 (``W[i0]`` with i0 left over from the previous loop) and a
    gradient of [4, 2, 2]; the numpy target failed to generate (IndexError)."""
    model = gradc.compile_string(CONST_AND_LOOP_INDEX, target=target, cache=False)
    params, x = {"W": np.array([1.0, 2.0, 3.0])}, np.zeros((2, 4))
    assert model.loss(params, x=x) == 15.0  # 1 + (1 + 4 + 9)
    loss, grads = model.loss_and_grad(params, x=x)
    assert loss == 15.0
    np.testing.assert_array_equal(grads["W"], [4.0, 4.0, 6.0])


def test_reads_at_a_constant_and_at_a_loop_index_are_distinct_symbols():
    from gradc.passes.kernels import Affine, Buffer, Read
    w = Buffer("p_W", (3,), "f64", "arg")
    assert Read(w, (0,)) != Read(w, (Affine(None, 0),))
    assert Read(w, (Affine(None, 0),)) == Read(w, (Affine(None, 0),))
