"""derive's proofs for symbolic sizes: they go through, their moves refuse unsound steps, and a
wrong rule written as a step fails the concrete cross-check."""

import subprocess
import sys

import pytest
import sympy
from sympy import IndexedBase, KroneckerDelta, Sum

from derive import PROOF_KINDS, ProofError, Sizes, general_proof
from derive._general import _axis_symbols, _cross_check, _Step, distribute, eliminate, expand_sums


@pytest.mark.parametrize("kind", PROOF_KINDS)
def test_proof_holds_and_is_cross_checked_in_1d(kind):
    proof = general_proof(kind)
    assert proof.verified, proof.failures[:5]
    assert proof.kind == kind and proof.ndim == 1
    assert len(proof.checked_sizes) >= 10
    # The last step of each side equates the derivative with one normalised sum.
    conclusions = [eq for description, eq in proof.steps if description.startswith("Normalise")]
    assert [eq.lhs for eq in conclusions] == [eq.lhs for eq in proof.identities]


@pytest.mark.parametrize("kind", ["stride1", "general"])
def test_proof_holds_in_2d(kind):
    proof = general_proof(kind, ndim=2)
    assert proof.verified, proof.failures[:5]
    assert all(len(sizes) == 2 for sizes in proof.checked_sizes)
    assert "axis by axis" in proof.statement


def test_symbolic_options_are_symbols_only_where_the_kind_says():
    tiny = [(Sizes(n=2, k=1),)]  # the cheapest cross-check (sizes=[] is refused)
    free = {kind: {symbol.name for symbol in general_proof(kind, sizes=tiny).identities[0].free_symbols}
            for kind in PROOF_KINDS}
    assert {"s", "d", "a", "p"} & free["stride1"] == set()
    assert {"s", "d", "a", "p"} & free["stride"] == {"s"}
    assert {"s", "d", "a", "p"} & free["dilation"] == {"d"}
    assert {"s", "d", "a", "p"} & free["padding"] == {"p"}
    assert {"s", "d", "a", "p"} <= free["general"]


def test_sympys_strided_delta_sum_gives_a_fraction_and_eliminate_refuses_it():
    # The pitfall of REFERENCES.md: SymPy sums delta(j, 2y) over y to G[j/2], which at j = 1
    # reads G[1/2] where the true value is 0.
    j, y = sympy.symbols("j y", integer=True)
    m = sympy.Symbol("m", integer=True, positive=True)
    G = IndexedBase("G")
    strided = Sum(KroneckerDelta(j, 2 * y) * G[y], (y, 0, m - 1))
    assert strided.doit().subs({j: 1, m: 3}) == G[sympy.Rational(1, 2)]
    assert expand_sums(strided.subs({j: 1, m: 3})) == 0
    with pytest.raises(ProofError, match="no factor"):
        eliminate(strided, y, j / 2, {j: (0, 2 * m - 2)})


def test_eliminate_refuses_a_value_outside_the_range():
    v = sympy.Symbol("v", integer=True)
    k = sympy.Symbol("k", integer=True, positive=True)
    F = IndexedBase("F")
    total = Sum(KroneckerDelta(v, k) * F[v], (v, 0, k - 1))
    with pytest.raises(ProofError, match="may leave"):
        eliminate(total, v, k, {})
    assert eliminate(Sum(KroneckerDelta(v, k - 1) * F[v], (v, 0, k - 1)), v, k - 1, {}) == F[k - 1]


def test_distribute_refuses_a_factor_that_uses_another_sums_variable():
    t, y = sympy.symbols("t y", integer=True)
    F, G = IndexedBase("F"), IndexedBase("G")
    with pytest.raises(ProofError, match="depends"):
        distribute(F[y] * Sum(G[y] * F[t], (t, 0, 2)) * Sum(G[t], (y, 0, 2)))
    assert distribute(F[t] * Sum(G[y], (y, 0, 2))) == Sum(F[t] * G[y], (y, 0, 2))


def test_an_unrotated_filter_fails_the_cross_check():
    proof = general_proof("stride1", sizes=[(Sizes(n=2, k=1),)])
    rule = proof.identities[0].rhs
    # Replace the rotated filter's placement delta(v, k - 1 - t) by delta(v, t): no rotation.
    v, t = sympy.symbols("v t", integer=True)
    k = sympy.Symbol("k", integer=True, positive=True)
    unrotated = rule.replace(
        lambda e: isinstance(e, KroneckerDelta) and e.free_symbols == {v, t, k},
        lambda e: KroneckerDelta(v, t))
    assert unrotated != rule
    axes = _axis_symbols_of(proof)
    wrong = _Step("unrotated", sympy.Eq(proof.identities[0].lhs, unrotated), "dX")
    right = _Step("rotated", proof.identities[0], "dX")
    samples = [(Sizes(n=4, k=2),), (Sizes(n=5, k=3),)]
    assert all(not _cross_check(axes, [right], sample) for sample in samples)
    assert all(_cross_check(axes, [wrong], sample) for sample in samples)


def _axis_symbols_of(proof):
    assert proof.ndim == 1
    return [_axis_symbols(proof.kind, "")]


def test_general_proof_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        general_proof("transposed")
    with pytest.raises(ValueError, match="ndim"):
        general_proof("stride", ndim=0)
    with pytest.raises(ValueError, match="s = 1"):
        general_proof("stride1", sizes=[(Sizes(n=4, k=2, s=2),)])


def test_closed_forms_solve_the_strided_delta_with_a_divisibility_condition():
    proof = general_proof("stride", sizes=[(Sizes(n=6, k=2, s=2),), (Sizes(n=7, k=3, s=3),)])
    assert proof.verified
    lhs_form = proof.closed_forms[0][1].rhs
    (piecewise,) = lhs_form.atoms(sympy.Piecewise)
    assert piecewise.has(sympy.Mod)
    # At j = 1, s = 2 the true value is 0 (no output position 2y equals 1), not F_t G[(1-t)/2].
    s, j, m, k = (next(x for x in lhs_form.free_symbols if x.name == name) for name in "sjmk")
    at_one = expand_sums(lhs_form.xreplace({s: 2, j: 1, m: 3, k: 1}))
    assert at_one == 0


def test_derive_imports_no_jax():
    code = "import sys, derive; derive.seed_case(); print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('jax', 'jaxlib', 'impl', 'convgrad')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
