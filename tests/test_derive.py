"""derive's concrete derivations: the seed case by hand, exactness, wrong rules fail, validation."""

import dataclasses
import itertools
import random

import pytest
import sympy

import impl
from derive import ROTATED_FILTER_RULE, derive_2d, derive_conv, seed_case
from derive._args import Axis
from derive._arrays import canonical_sum, product
from derive._rule import lhs_cotangent_pads, rhs_cotangent_pads

# The tutorial's worked example (3x3 input, 2x2 filter, stride 1), written out by hand from its
# figures with the 1-based indices shifted to 0-based: dL/dF is the valid correlation of X with G,
# dL/dX the full convolution of G with the filter rotated by 180 degrees.
SEED_DL_DF = [
    ["X_0_0*G_0_0 + X_0_1*G_0_1 + X_1_0*G_1_0 + X_1_1*G_1_1",
     "X_0_1*G_0_0 + X_0_2*G_0_1 + X_1_1*G_1_0 + X_1_2*G_1_1"],
    ["X_1_0*G_0_0 + X_1_1*G_0_1 + X_2_0*G_1_0 + X_2_1*G_1_1",
     "X_1_1*G_0_0 + X_1_2*G_0_1 + X_2_1*G_1_0 + X_2_2*G_1_1"],
]
SEED_DL_DX = [
    ["F_0_0*G_0_0", "F_0_1*G_0_0 + F_0_0*G_0_1", "F_0_1*G_0_1"],
    ["F_1_0*G_0_0 + F_0_0*G_1_0", "F_1_1*G_0_0 + F_1_0*G_0_1 + F_0_1*G_1_0 + F_0_0*G_1_1",
     "F_1_1*G_0_1 + F_0_1*G_1_1"],
    ["F_1_0*G_1_0", "F_1_1*G_1_0 + F_1_0*G_1_1", "F_1_1*G_1_1"],
]


def test_seed_case_matches_the_tutorial_entry_by_entry():
    d = seed_case()
    assert d.verified and d.mismatches == ()
    assert (d.input_shape, d.filter_shape, d.output_shape) == ((3, 3), (2, 2), (2, 2))
    for derived, rule, by_hand in ((d.dL_dF, d.rule_dL_dF, SEED_DL_DF),
                                   (d.dL_dX, d.rule_dL_dX, SEED_DL_DX)):
        for i, row in enumerate(by_hand):
            for j, text in enumerate(row):
                assert sympy.expand(derived[i, j] - sympy.sympify(text)) == 0, (i, j)
                assert sympy.expand(rule[i, j] - sympy.sympify(text)) == 0, (i, j)
    # O_ij = sum_uv X_{i+u, j+v} F_uv (cross-correlation, the tutorial's forward pass).
    assert d.O[1, 0] == sympy.sympify("X_1_0*F_0_0 + X_1_1*F_0_1 + X_2_0*F_1_0 + X_2_1*F_1_1")
    loss = sum(d.G[i, j] * d.O[i, j] for i in range(2) for j in range(2))
    assert sympy.expand(d.L - loss) == 0


def test_seed_derivative_equals_sympy_diff_of_the_loss():
    # The independent, slow way: differentiate the expanded loss with sympy.diff, entry by entry.
    d = seed_case()
    loss = sympy.expand(d.L)
    for array, derived in ((d.X, d.dL_dX), (d.F, d.dL_dF)):
        for index in itertools.product(*map(range, array.shape)):
            assert sympy.diff(loss, array[index]) == derived[index]


def test_padded_g_and_rotated_filter_are_written_out():
    d = seed_case()
    assert d.rotated_F == sympy.Matrix([[d.F[1, 1], d.F[1, 0]], [d.F[0, 1], d.F[0, 0]]])
    assert d.padded_G == sympy.Matrix(4, 4, lambda i, j: d.G[i - 1, j - 1]
                                      if 1 <= i <= 2 and 1 <= j <= 2 else 0)


@pytest.mark.parametrize("kwargs", [
    dict(input_shape=(5, 7), filter_shape=(2, 3), stride=(2, 1), padding=((1, 0), (0, 2)),
         dilation=(1, 2)),
    dict(input_shape=(6, 4), filter_shape=(3, 3), stride=3, padding="SAME"),
    dict(input_shape=(7, 5), filter_shape=(2, 2), stride=(1, 2), padding=((-1, 2), (1, -1)),
         dilation=(3, 1)),
])
def test_derive_2d_matches_sympy_diff(kwargs):
    d = derive_2d(**kwargs)
    assert d.verified
    loss = sympy.expand(d.L)
    for array, derived in ((d.X, d.dL_dX), (d.F, d.dL_dF)):
        for index in itertools.product(*map(range, array.shape)):
            assert sympy.diff(loss, array[index]) == derived[index], index


def test_derive_conv_grouped_batched_3d_verifies():
    cases = [
        dict(lhs_shape=(2, 4, 4, 3), rhs_shape=(6, 2, 2, 2), window_strides=(2, 1),
             padding=((1, 0), (0, 1)), rhs_dilation=(1, 2), feature_group_count=2),
        dict(lhs_shape=(4, 2, 5), rhs_shape=(4, 2, 2), window_strides=(2,), padding=((0, 1),),
             lhs_dilation=(2,), batch_group_count=2),
        dict(lhs_shape=(1, 2, 3, 4, 3), rhs_shape=(2, 2, 2, 2, 1), padding="SAME"),
    ]
    for case in cases:
        d = derive_conv(**case)
        assert d.verified, d.mismatches
        assert d.dL_dX.shape == d.X.shape and d.dL_dF.shape == d.F.shape
        assert d.O.shape == d.out_shape == d.G.shape


def _identity(grid):
    return grid


def _stride(axis):
    return axis.s


def _wrong_low_pad(axis):
    low, high = lhs_cotangent_pads(axis)
    return low + 1, high - 1


@pytest.mark.parametrize(("name", "wrong", "options"), [
    ("filter not rotated", dict(rotate_filter=_identity), dict()),
    ("G spread by the dilation, not the stride", dict(cotangent_spread=lambda axis: axis.d),
     dict(stride=(2, 1), dilation=(1, 1))),
    ("window stride = forward stride in dL/dX", dict(lhs_window_stride=_stride),
     dict(stride=(2, 1))),
    ("window stride = forward stride in dL/dF", dict(rhs_window_stride=_stride),
     dict(stride=(2, 1), dilation=(1, 2))),
    ("G padded one too far", dict(lhs_cotangent_pads=_wrong_low_pad), dict()),
])
def test_a_wrong_rule_fails_the_exact_check(name, wrong, options):
    rule = dataclasses.replace(ROTATED_FILTER_RULE, **wrong)
    shapes = dict(input_shape=(5, 6), filter_shape=(2, 3))
    assert derive_2d(**shapes, **options).verified, name
    d = derive_2d(**shapes, **options, rule=rule)
    assert not d.verified, name
    assert d.mismatches


def test_wrong_rule_fails_the_seed_case():
    d = seed_case(rule=dataclasses.replace(ROTATED_FILTER_RULE, rotate_filter=_identity))
    assert not d.verified
    assert any(m.startswith("dL_dX") for m in d.mismatches)
    assert not any(m.startswith("dL_dF") for m in d.mismatches)


@pytest.mark.parametrize("n, k, s, lo, hi, a, d", [
    (n, k, s, lo, hi, a, d)
    for n, k, s, lo, hi, a, d in itertools.product(range(1, 6), range(1, 4), range(1, 3),
                                                    range(-1, 3), range(-1, 2), range(1, 3),
                                                    range(1, 3))
    if d * (k - 1) + 1 <= a * (n - 1) + 1 + lo + hi
][::17])
def test_cotangent_paddings_match_impl(n, k, s, lo, hi, a, d):
    axis = Axis(n=n, k=k, s=s, lo=lo, hi=hi, a=a, d=d)
    args = ((n,), (k,), (s,), (axis.m,), ((lo, hi),), (a,), (d,))
    assert impl.lhs_cotangent_padding(*args) == (lhs_cotangent_pads(axis),)
    assert impl.rhs_cotangent_padding(*args) == (rhs_cotangent_pads(axis),)


def test_same_padding_matches_impl():
    d = derive_2d((5, 4), (3, 2), stride=(2, 1), padding="SAME", dilation=(1, 2))
    assert d.padding == impl.padtype_to_pads((5, 4), (3, 3), (2, 1), "SAME")
    assert d.output_shape == (3, 4)


def test_fast_products_and_sums_equal_sympys():
    rng = random.Random(0)
    symbols = [sympy.Symbol(f"{letter}_{i}_{j}") for letter in "XFG" for i in range(12)
               for j in range(3)]
    pairs = [rng.sample(symbols, 2) for _ in range(300)]
    pairs = [(a, b) for a, b in pairs if a.name[0] != b.name[0]]
    for a, b in pairs:
        assert product(a, b).args == sympy.Mul(a, b).args
    for size in (0, 1, 2, 25):
        terms = [product(a, b) for a, b in pairs[:size]]
        assert canonical_sum(terms).args == sympy.Add(*terms).args
    repeated = [product(*pairs[0])] * 2 + [product(*pairs[1])]
    assert canonical_sum(repeated) == sympy.Add(*repeated)


def test_progress_reports_every_stage():
    calls = []
    derive_2d((6, 5), (2, 2), progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = [stage for stage, _, _ in calls]
    assert sorted(set(stages), key=stages.index) == ["forward", "derivative", "rule", "verify"]
    for stage in set(stages):
        last = [call for call in calls if call[0] == stage][-1]
        assert last[1] == last[2] > 0


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(input_shape=(2, 2), filter_shape=(3, 1)), ValueError, "must fit in the padded"),
    (dict(input_shape=(3, 0), filter_shape=(1, 1)), ValueError, r"input_shape \(=\(3, 0\)\)"),
    (dict(input_shape=(3, 3), filter_shape=(-1, 1)), ValueError, r"filter_shape \(=\(-1, 1\)\)"),
    (dict(input_shape=(3, 3, 3), filter_shape=(1, 1)), ValueError, "2 entries"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), stride=0), ValueError, "stride"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), stride=1.5), TypeError, "stride"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), dilation=(1, 2, 3)), ValueError, "dilation"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), padding="FULL"), ValueError, "padding"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), padding=((1, 2, 3),)), ValueError, "padding"),
    (dict(input_shape=(3, 3), filter_shape=(1, 1), padding=((1, 2), (0, 0.5))), TypeError,
     "padding"),
    (dict(input_shape="3x3", filter_shape=(1, 1)), TypeError, "input_shape"),
])
def test_derive_2d_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        derive_2d(**kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(lhs_shape=(1, 3, 4), rhs_shape=(2, 2, 2), feature_group_count=2), "lhs channels"),
    (dict(lhs_shape=(1, 4, 4), rhs_shape=(3, 2, 2), feature_group_count=2), "must divide rhs"),
    (dict(lhs_shape=(3, 2, 4), rhs_shape=(2, 2, 2), batch_group_count=2), "lhs batch"),
    (dict(lhs_shape=(2, 4, 4), rhs_shape=(4, 2, 2), feature_group_count=2, batch_group_count=2),
     "cannot both"),
    (dict(lhs_shape=(1, 1, 4), rhs_shape=(1, 1, 2), lhs_dilation=(2,), padding="SAME"),
     "explicit"),
    (dict(lhs_shape=(1, 1), rhs_shape=(1, 1)), "rank"),
])
def test_derive_conv_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        derive_conv(**kwargs)


@pytest.mark.slow
def test_the_64x64_5x5_case_verifies():
    # The benchmark's large case (benchmarks/bench_derive.py times it); here only its correctness.
    d = derive_2d((64, 64), (5, 5))
    assert d.verified and d.output_shape == (60, 60)
    assert d.dL_dX[30, 30] == d.rule_dL_dX[30, 30] and len(d.dL_dX[30, 30].args) == 25
