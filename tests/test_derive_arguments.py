"""derive's size limits and argument checks: huge cases refused before any SymPy work, NumPy
integers and 1-D integer arrays accepted wherever ints are, every refusal naming its argument."""

import dataclasses
import itertools
import random

import numpy as np
import pytest
import sympy

import derive
from derive import (
    MAX_CELLS,
    MAX_CHECK_TERMS,
    MAX_PRODUCTS,
    ROTATED_FILTER_RULE,
    Sizes,
    derive_2d,
    derive_conv,
    general_proof,
    seed_case,
)
from derive._arrays import Grid, correlate, product
from derive._concrete import make_geometry, size_of


@pytest.fixture
def no_sympy_work(monkeypatch):
    """Any derivation or proof that gets past the argument checks fails at once (instead of
    running for minutes or exhausting memory, should a check regress)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the arguments were accepted and the SymPy work started")

    monkeypatch.setattr(derive._derivation, "compute", refuse)
    monkeypatch.setattr(derive._general, "_forward", refuse)
    monkeypatch.setattr(derive._general, "_cross_check", refuse)


# ---- size limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "message"), [
    (lambda: derive_2d((10000, 10000), (2, 2)),
     r"input_shape \(=\(10000, 10000\)\).*399,920,004 products.*MAX_PRODUCTS \(=4,194,304\)"),
    (lambda: derive_2d((3, 3), (2, 2), padding=((10**6, 0), (0, 0))),
     r"padding \(=\(\(1000000, 0\), \(0, 0\)\)\).*products.*MAX_PRODUCTS"),
    (lambda: derive_conv((10**9, 1, 4), (1, 1, 2)),
     r"lhs_shape \(=\(1000000000, 1, 4\)\).*6,000,000,000 products.*MAX_PRODUCTS"),
    # One product, but a 4096x4096 input: its Symbols and padded arrays are the cost.
    (lambda: derive_2d((4096, 4096), (1, 1), stride=4096),
     r"stride \(=\(4096, 4096\)\).*16,777,216 cells.*MAX_CELLS \(=1,048,576\)"),
    # Three products, but an input dilated to 200,000,001 entries.
    (lambda: derive_conv((1, 1, 3), (1, 1, 1), (10**8,), lhs_dilation=(10**8,)),
     r"lhs_dilation \(=\(100000000,\)\).*200,000,001 cells.*MAX_CELLS"),
    # Channels count: 4096 x 4096 planes of one entry each.
    (lambda: derive_conv((4096, 4096, 1), (4096, 4096, 1)),
     r"rhs_shape \(=\(4096, 4096, 1\)\).*68,719,476,736 products.*MAX_PRODUCTS"),
])
def test_huge_cases_are_refused_before_any_sympy_work(no_sympy_work, call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "general_proof" in str(error.value)


def test_the_limits_are_inclusive():
    assert (MAX_PRODUCTS, MAX_CELLS) == (2**22, 2**20)
    # 64x64 outputs of a 32x32 filter: exactly 2**22 products.
    at_limit = make_geometry((1, 1, 95, 95), (1, 1, 32, 32), None, "VALID", None, None, 1, 1)
    assert size_of(at_limit) == (MAX_PRODUCTS, 126 * 126)
    with pytest.raises(ValueError, match="MAX_PRODUCTS"):
        make_geometry((1, 1, 95, 96), (1, 1, 32, 32), None, "VALID", None, None, 1, 1)
    # One product, 1024x1024 cells; per axis the dilated input plus the larger of lo + hi and
    # the dilated filter less one.
    one_output = make_geometry((1, 1, 2**10, 2**10), (1, 1, 1, 1), (2**10, 2**10), "VALID", None,
                               None, 1, 1)
    assert size_of(one_output) == (1, MAX_CELLS)
    with pytest.raises(ValueError, match="MAX_CELLS"):
        make_geometry((1, 1, 2**10, 2**10 + 1), (1, 1, 1, 1), (2**10, 2**10), "VALID", None, None,
                      1, 1)
    cropped = make_geometry((1, 1, 2**10, 2**10), (1, 1, 1, 1), (2**10, 2**10),
                            ((-(2**10) + 1, 0), (0, 0)), None, None, 1, 1)
    assert size_of(cropped) == (1, MAX_CELLS)
    with pytest.raises(ValueError, match="MAX_CELLS"):
        make_geometry((1, 1, 2**10, 2**10), (1, 1, 2, 1), (2**10, 2**10), ((-(2**10) + 2, 0), (0, 0)),
                      None, None, 1, 1)
    # Batch and channels multiply the cells: the planes of X (here 2 x 9) or G, or of F times
    # the dilated filter.
    with pytest.raises(ValueError, match=r"1,179,648 cells"):
        make_geometry((2, 9, 256, 256), (3, 9, 1, 1), (256, 256), "VALID", None, None, 1, 1)
    with pytest.raises(ValueError, match=r"1,049,600 cells"):
        make_geometry((1, 32, 1025), (32, 32, 1025), None, "VALID", None, None, 1, 1)


def test_the_reports_largest_case_and_the_tests_cases_fit():
    # `convgrad report`'s largest allowed case: 170x170 input, 3x3 filter, SAME padding.
    report = make_geometry((1, 1, 170, 170), (1, 1, 3, 3), None, "SAME", None, None, 1, 1)
    products, cells = size_of(report)
    assert products == 170 * 170 * 9 <= MAX_PRODUCTS and cells <= MAX_CELLS
    big = make_geometry((1, 1, 205, 205), (1, 1, 5, 5), None, "VALID", None, None, 1, 1)
    assert size_of(big)[0] == 201 * 201 * 25 <= MAX_PRODUCTS


def test_the_command_lines_limits_are_within_derives():
    from convgrad.commands import report

    assert report.MAX_PRODUCTS <= MAX_PRODUCTS and report.MAX_CELLS <= MAX_CELLS


def test_general_proof_refuses_sizes_too_big_to_cross_check(no_sympy_work):
    with pytest.raises(ValueError, match=r"sizes\[1\] \(=\(Sizes\(n=1000000, .*MAX_CHECK_TERMS"):
        general_proof("stride1", sizes=[(Sizes(n=3, k=2),), (Sizes(n=10**6, k=1),)])
    # n m k (n + k + K + M + 2): n = 3, k = 2, m = 2, dilated filter K = 2, spread output M = 2.
    assert derive._general.check_terms((Sizes(n=3, k=2),)) == 3 * 2 * 2 * (3 + 2 + 2 + 2 + 2)
    assert derive._general.check_terms((Sizes(n=5, k=2, s=2, d=3),)) == 5 * 1 * 2 * (5 + 2 + 4 + 1 + 2)
    assert derive._general.check_terms((Sizes(n=24, k=4),)) <= MAX_CHECK_TERMS


def test_a_sparse_full_convolution_is_scattered_not_gathered():
    # G has one entry (stride 2**14), the full convolution 2**14 outputs of a 2**10-tap filter:
    # gathering would look up 2**24 positions, scattering looks up 2**10.
    d = derive_conv((1, 1, 2**14), (1, 1, 2**10), (2**14,))
    assert d.verified and d.out_shape == (1, 1, 1)
    assert d.dL_dX[0, 0, 5] == d.F[0, 0, 5] * d.G[0, 0, 0]


def test_correlate_scatters_and_gathers_alike():
    rng = random.Random(0)
    for _ in range(200):
        ndim = rng.randint(1, 2)
        shape = tuple(rng.randint(1, 8) for _ in range(ndim))
        window_shape = tuple(rng.randint(1, size) for size in shape)
        strides = tuple(rng.randint(1, 3) for _ in range(ndim))
        density = rng.choice([0.05, 0.5, 1.0])
        lhs = Grid(shape, {index: sympy.Symbol("A_" + "_".join(map(str, index)))
                           for index in itertools.product(*map(range, shape))
                           if rng.random() < density})
        window = Grid(window_shape, {index: sympy.Symbol("W_" + "_".join(map(str, index)))
                                     for index in itertools.product(*map(range, window_shape))
                                     if rng.random() < 0.7})
        out_shape = tuple((n - k) // s + 1 for n, k, s in zip(shape, window_shape, strides, strict=True))
        expected = {
            y: sorted((product(lhs.entries[position], weight) for tap, weight in window.entries.items()
                       if (position := tuple(s * i + t for s, i, t in zip(strides, y, tap, strict=True)))
                       in lhs.entries), key=str)
            for y in itertools.product(*map(range, out_shape))
        }
        found = {y: sorted(terms, key=str) for y, terms in correlate(lhs, window, strides).items()}
        assert found == expected, (shape, window_shape, strides)


# ---- NumPy integers and arrays ---------------------------------------------------------------


def _same(first, second):
    assert first.verified and second.verified
    assert first == second


def test_derive_2d_accepts_numpy_integers_and_arrays():
    expected = derive_2d((5, 4), (2, 2), stride=2, padding=((1, 0), (0, 1)), dilation=(1, 2))
    _same(derive_2d(np.array([5, 4]), np.array([2, 2], dtype=np.int32), stride=np.int64(2),
                    padding=np.array([[1, 0], [0, 1]]), dilation=np.array([1, 2])), expected)
    _same(derive_2d((np.int64(5), np.uint8(4)), [2, 2], stride=(np.int16(2), 2),
                    padding=[np.array([1, 0]), (np.int64(0), 1)], dilation=(1, np.int64(2))),
          expected)
    assert derive_2d((3, 3), (2, 2), stride=np.array(2)).stride == (2, 2)  # a 0-d array is an int


def test_derive_conv_accepts_numpy_integers_and_arrays():
    expected = derive_conv((2, 2, 4), (2, 1, 2), (2,), [(1, 0)], feature_group_count=2)
    found = derive_conv(np.array([2, 2, 4]), np.array([2, 1, 2]), np.array([2]),
                        np.array([[1, 0]]), lhs_dilation=np.array([1]),
                        rhs_dilation=(np.int64(1),), feature_group_count=np.int64(2),
                        batch_group_count=np.uint8(1))
    _same(found, expected)
    assert all(type(size) is int for size in (*found.lhs_shape, *found.padding[0],
                                              found.feature_group_count))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(stride=True), TypeError, r"stride \(=True\)"),
    (dict(stride=np.True_), TypeError, r"stride \(=np.True_\)"),
    (dict(stride=np.float64(2.0)), TypeError, r"stride \(=np.float64\(2.0\)\)"),
    (dict(stride="2"), TypeError, r"stride \(='2'\) must be an int or a sequence of 2 ints"),
    (dict(stride=np.array([1, 2, 3])), ValueError, r"stride .* must have 2 entries"),
    (dict(dilation=(1, True)), TypeError, r"dilation \(=\(1, True\)\)"),
    (dict(input_shape=(True, 3)), TypeError, r"input_shape \(=\(True, 3\)\)"),
    (dict(input_shape=np.array([3.0, 3.0])), TypeError, r"input_shape .* must contain ints"),
    (dict(input_shape=np.ones((2, 2), dtype=int)), TypeError, r"input_shape \(=array"),
    (dict(filter_shape=5), TypeError, r"filter_shape \(=5\) must be a \(rows, columns\) pair"),
    (dict(padding=np.array([1, 0])), TypeError, r"padding \(=array\(\[1, 0\]\)\) must be a string or"),
    (dict(padding=np.array([[1, 0]])), ValueError, r"padding .* one \(lo, hi\) pair per spatial"),
    (dict(padding=5), TypeError, r"padding \(=5\)"),
    (dict(padding=((1, 0), (0, 0.5))), TypeError, r"padding \(=.*0\.5.*\) must contain \(lo, hi\)"),
    (dict(padding=((1, 0), (True, 0))), TypeError, r"padding \(=.*True.*\) must contain \(lo, hi\)"),
    (dict(progress=5), TypeError, r"progress \(=5\) must be None or a callable"),
    (dict(rule=None), TypeError, r"rule \(=None\) must be a derive.Rule"),
    (dict(rule=dataclasses.replace(ROTATED_FILTER_RULE, rotate_filter=None)), TypeError,
     r"rule.rotate_filter \(=None\) must be callable"),
])
def test_derive_2d_names_the_bad_argument(no_sympy_work, kwargs, error, message):
    with pytest.raises(error, match=message):
        derive_2d(**{"input_shape": (3, 3), "filter_shape": (2, 2), **kwargs})


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(feature_group_count=2.0), TypeError, r"feature_group_count \(=2\.0\) must be an int"),
    (dict(feature_group_count=True), TypeError, r"feature_group_count \(=True\) must be an int"),
    (dict(batch_group_count=0), ValueError, r"batch_group_count \(=0\) must be >= 1"),
    (dict(batch_group_count="2"), TypeError, r"batch_group_count \(='2'\) must be an int"),
    (dict(lhs_shape="224"), TypeError, r"lhs_shape \(='224'\) must be a sequence"),
    (dict(rhs_shape=np.array([[2, 2, 2]])), TypeError, r"rhs_shape \(=array"),
    (dict(window_strides=(np.int64(0),)), ValueError, r"window_strides .* must have entries >= 1"),
    (dict(lhs_dilation=2), TypeError, r"lhs_dilation \(=2\) must be a sequence of 1 ints"),
    (dict(progress="verbose"), TypeError, r"progress \(='verbose'\)"),
    (dict(rule=ROTATED_FILTER_RULE.rotate_filter), TypeError, r"rule \(=<function rot180"),
])
def test_derive_conv_names_the_bad_argument(no_sympy_work, kwargs, error, message):
    with pytest.raises(error, match=message):
        derive_conv(**{"lhs_shape": (2, 2, 4), "rhs_shape": (2, 2, 2), **kwargs})


def test_seed_case_checks_its_rule(no_sympy_work):
    with pytest.raises(TypeError, match=r"rule \(=None\)"):
        seed_case(rule=None)


# ---- general_proof ---------------------------------------------------------------------------


def test_general_proof_accepts_numpy_integers():
    sizes = [(Sizes(n=np.int64(5), k=2, s=np.uint8(2)),)]
    proof = general_proof("stride", ndim=np.int64(1), sizes=sizes)
    assert proof.verified and proof.ndim == 1 and type(proof.ndim) is int
    assert proof.checked_sizes == ((Sizes(n=5, k=2, s=2),),)
    assert type(proof.checked_sizes[0][0].n) is int


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(ndim=True), TypeError, r"ndim \(=True\) must be an int"),
    (dict(ndim=1.0), TypeError, r"ndim \(=1\.0\) must be an int"),
    (dict(ndim=np.int64(4)), ValueError, r"ndim \(=np.int64\(4\)\) must be 1, 2 or 3"),
    (dict(kind=None), ValueError, r"kind \(=None\) must be one of"),
    (dict(sizes=[]), ValueError, r"sizes \(=\[\]\) must hold at least one tuple of Sizes"),
    (dict(sizes=()), ValueError, r"sizes \(=\(\)\) must hold at least one"),
    (dict(sizes=Sizes(n=3, k=2)), TypeError, r"sizes \(=Sizes\(n=3, .*\) must be a sequence of tuples"),
    (dict(sizes="3,2"), TypeError, r"sizes \(='3,2'\) must be a sequence of tuples"),
    (dict(sizes=[Sizes(n=3, k=2)]), TypeError,
     r"sizes\[0\] \(=Sizes\(n=3, .*\) must be a tuple of 1 derive.Sizes.*\[\(Sizes\(n=5, k=2\),\)\]"),
    (dict(sizes=[(Sizes(n=3, k=2), Sizes(n=3, k=2))]), ValueError,
     r"sizes\[0\] .* must have one Sizes per spatial axis \(ndim = 1\), got 2"),
    (dict(sizes=[(Sizes(n=3, k=2),), ((3, 2),)]), TypeError,
     r"sizes\[1\]\[0\] \(=\(3, 2\)\) must be a derive.Sizes"),
    (dict(sizes=[(Sizes(n=0, k=1),)]), ValueError, r"sizes\[0\]\[0\].n \(=0\) must be >= 1"),
    (dict(sizes=[(Sizes(n=3, k=1, s=0),)], kind="stride"), ValueError, r"sizes\[0\]\[0\].s \(=0\)"),
    (dict(sizes=[(Sizes(n=2.0, k=1),)]), TypeError, r"sizes\[0\]\[0\].n \(=2\.0\) must be an int"),
    (dict(sizes=[(Sizes(n=3, k=1, lo=None),)]), TypeError, r"sizes\[0\]\[0\].lo \(=None\)"),
    (dict(sizes=[(Sizes(n=2, k=3),)]), ValueError,
     r"sizes\[0\]\[0\] \(=Sizes\(n=2, k=3.*\): the dilated filter \(=3\) must fit"),
    (dict(sizes=[(Sizes(n=4, k=2, s=2),)]), ValueError, r"sizes\[0\]\[0\]: .*must have s = 1"),
])
def test_general_proof_names_the_bad_argument(no_sympy_work, kwargs, error, message):
    with pytest.raises(error, match=message):
        general_proof(**kwargs)
