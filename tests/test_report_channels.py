"""``convgrad report`` with a batch, channels and feature groups (``--batch``, ``--channels``,
``--groups``): every format of one grouped, strided, padded, dilated case, its JSON evaluated
against ``jax.vjp`` of the native ``jax.lax.conv_general_dilated``, and bad group counts.

The case: batch 2, 4 input and 6 output channels in 2 groups, input 5x4, filter 2x3, stride
(2, 1), padding (1, 0) rows and (0, 2) columns, dilation (2, 1). Hand-written formulas below come
from the forward index formula O[n, o, i, j] = sum_{c, a, b} Xpad[n, 2g + c, 2i + 2a, j + b]
F[o, c, a, b] with g = o // 3 (Xpad: one zero row on top, two zero columns on the right).
"""

import json
import re
import shutil
import subprocess
import xml.dom.minidom

import jax
import numpy as np
import pytest
import sympy as sp
from jax import lax

import derive
from convgrad.cli import main
from convgrad.report import case_report
from tests.helpers import assert_close

CASE = ["--batch", "2", "--channels", "4x6", "--groups", "2", "--input", "5x4", "--filter", "2x3",
        "--stride", "2,1", "--padding", "1:0,0:2", "--dilation", "2,1"]
LAX_OPTIONS = dict(window_strides=(2, 1), padding=((1, 0), (0, 2)), rhs_dilation=(2, 1),
                   feature_group_count=2)
PDFLATEX = shutil.which("pdflatex")

MARKDOWN_LINES = [
    # O[0, 0, 0, 0]: rows 2*0 + 2a = 0 (padding), 2 (X row 1); columns b = 0, 1, 2; group 0 reads
    # channels 0 and 1.
    r"O_{0,0,0,0} &= X_{0,0,1,0}\,F_{0,0,1,0} + X_{0,0,1,1}\,F_{0,0,1,1} + X_{0,0,1,2}\,F_{0,0,1,2}"
    r" + X_{0,1,1,0}\,F_{0,1,1,0} + X_{0,1,1,1}\,F_{0,1,1,1} + X_{0,1,1,2}\,F_{0,1,1,2}",
    # O[1, 4, 0, 0]: feature 4 is in group 1, which reads channels 2 and 3.
    r"O_{1,4,0,0} &= X_{1,2,1,0}\,F_{4,0,1,0} + X_{1,2,1,1}\,F_{4,0,1,1} + X_{1,2,1,2}\,F_{4,0,1,2}"
    r" + X_{1,3,1,0}\,F_{4,1,1,0} + X_{1,3,1,1}\,F_{4,1,1,1} + X_{1,3,1,2}\,F_{4,1,1,2}",
    # dL/dX[0, 0, 1, 0]: X row 1 is padded row 2 = 2i + 2a, so (i, a) = (0, 1) or (1, 0); column
    # 0 = j + b, so j = b = 0; channel 0 feeds the features o = 0, 1, 2 of group 0.
    r"\frac{\partial L}{\partial X_{0,0,1,0}} &= G_{0,0,0,0}\,F_{0,0,1,0} + G_{0,0,1,0}\,F_{0,0,0,0}"
    r" + G_{0,1,0,0}\,F_{1,0,1,0} + G_{0,1,1,0}\,F_{1,0,0,0} + G_{0,2,0,0}\,F_{2,0,1,0}"
    r" + G_{0,2,1,0}\,F_{2,0,0,0}",
    # The rule's filter: rot180 of F, in/out features swapped within each group.
    r"{R}_{c,o-3g,:,:} = \operatorname{rot180}({F}_{o,c-2g,:,:}) , \quad g = \lfloor c/2 \rfloor",
    # R[3, 2] is F[5, 1] (c = 3: g = 1, o = 3 + 2, c - 2g = 1), dilated by 2 along the rows
    # (a zero row between its two rows) and rotated.
    r"{R}_{3,2,:,:} = \operatorname{rot180}({F}_{5,1,:,:}) = \begin{bmatrix} F_{5,1,1,2} & "
    r"F_{5,1,1,1} & F_{5,1,1,0} \\ 0 & 0 & 0 \\ F_{5,1,0,2} & F_{5,1,0,1} & F_{5,1,0,0} \end{bmatrix}",
    r"{O}_{n,o,i,j} = \sum_{c,a,b} {\tilde{X}}_{n,2g+c,2i+2a,j+b}\,{F}_{o,c,a,b} , \quad "
    r"g = \lfloor o/3 \rfloor",
]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The case in every format, written by the command into one folder."""
    folder = tmp_path_factory.mktemp("channels") / "out"
    assert main(["report", *CASE, "--format", "md,tex,html,json", "-o", str(folder)]) == 0
    return {path.suffix[1:]: path.read_text() for path in folder.iterdir()}


def test_markdown_writes_channels_groups_and_the_rule(reports):
    markdown = reports["md"]
    assert markdown.startswith("# Backpropagation through a convolution: batch 2, channels 4→6 in "
                               "2 groups, input 5×4, filter 2×3, stride (2, 1)")
    for line in MARKDOWN_LINES:
        assert line in markdown, line
    # Group 1: input channels 2-3 (4 / 2 per group), output features 3-5 (6 / 2 per group).
    assert "| 1 | 2–3 | 3–5 |" in markdown
    # 2*4*5*4 entries of dL/dX and 6*2*2*3 of dL/dF.
    assert "Exactly equal: for all 232 entries" in markdown
    assert "Showing 4 of the 12 (output feature, input channel) planes: (0, 0), (0, 1), (5, 0), " \
           "(5, 1)." in markdown
    assert "passed." in markdown and "feature_group_count = 2" in markdown.replace("\\_", "_")
    assert markdown.count("$$") % 2 == 0 and markdown.count("](data:image/png;base64,") == 2


def test_html_is_self_contained_with_well_formed_mathml(reports):
    page = reports["html"]
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert re.findall(r'src="([a-z]+):', page) == ["data", "data"]
    formulas = re.findall(r"<math[^>]*>.*?</math>", page, flags=re.S)
    assert len(formulas) > 200 and r"\frac" not in page
    for formula in formulas:
        xml.dom.minidom.parseString(formula)
    assert "<mo>⌊</mo><mi>c</mi><mo>/</mo><mn>2</mn><mo>⌋</mo>" in page


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base)")
def test_latex_compiles_without_overfull_lines(reports, tmp_path):
    (tmp_path / "report.tex").write_text(reports["tex"])
    result = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error",
                             "-no-shell-escape", "report.tex"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Overfull \\hbox" not in (tmp_path / "report.log").read_text(errors="replace")


def _symbols(letter, shape):
    return [sp.Symbol("_".join([letter, *map(str, index)])) for index in np.ndindex(*shape)]


def _evaluate(nested, symbols, numbers):
    """The nested strings parsed by ``sympy.sympify`` and evaluated at ``numbers``."""
    texts = np.asarray(nested, dtype=object)
    expressions = [sp.sympify(text) for text in texts.ravel()]
    assert set().union(*(e.free_symbols for e in expressions)) <= set(symbols)
    function = sp.lambdify(symbols, expressions, modules="numpy")
    return np.asarray(function(*numbers), dtype=np.float64).reshape(texts.shape)


def test_json_evaluates_to_jax_vjp_of_lax(reports):
    data = json.loads(reports["json"])
    assert (data["batch"], data["channels"], data["feature_group_count"]) == (2, [4, 6], 2)
    assert (data["input_layout"], data["filter_layout"], data["output_layout"]) == (
        "NCHW", "OIHW", "NCHW")
    # Output rows (5 + 1 + 0 - (2*(2-1)+1)) // 2 + 1 = 2, columns (4 + 0 + 2 - 3) // 1 + 1 = 4.
    assert data["output_shape"] == [2, 6, 2, 4]
    assert (data["input_shape"], data["filter_shape"]) == ([2, 4, 5, 4], [6, 2, 2, 3])
    assert data["verified"] is True and data["cross_check"]["passed"] is True
    rng = np.random.default_rng(11)
    shapes = {"X": data["input_shape"], "F": data["filter_shape"], "G": data["output_shape"]}
    values = {letter: rng.standard_normal(shape) for letter, shape in shapes.items()}
    symbols = [s for letter in "XFG" for s in _symbols(letter, shapes[letter])]
    numbers = [v for letter in "XFG" for v in values[letter].ravel()]
    exact = {key: _evaluate(data[key], symbols, numbers) for key in ("O", "dL_dX", "dL_dF")}

    def forward(x, f):
        return lax.conv_general_dilated(x, f, **LAX_OPTIONS)

    out, vjp = jax.vjp(forward, values["X"], values["F"])
    dx, df = vjp(values["G"])
    for name, oracle in (("O", out), ("dL_dX", dx), ("dL_dF", df)):
        assert np.asarray(oracle).dtype == np.float64
        assert_close(exact[name], oracle, "float64", f"{name} vs jax.vjp of lax")


def test_single_channel_flags_keep_the_single_channel_json(capsys):
    assert main(["report", "--format", "json"]) == 0
    default = capsys.readouterr().out
    assert main(["report", "--batch", "1", "--channels", "1", "--groups", "1", "--format", "json"]) == 0
    assert capsys.readouterr().out == default
    assert "batch" not in json.loads(default) and json.loads(default)["input_shape"] == [3, 3]


@pytest.mark.parametrize("argv, message", [
    (["--channels=4x6", "--groups=4"],
     "--groups (='4') must divide both channel counts (--channels 4x6)"),
    (["--channels=3x6", "--groups=2"],
     "--groups (='2') must divide both channel counts (--channels 3x6)"),
    (["--channels=4x6", "--groups=0"], "--groups (='0') must be a positive integer"),
    (["--batch=0"], "--batch (='0') must be a positive integer"),
    (["--channels=4by6"], "--channels (='4by6') must be CIN or CINxCOUT with positive integers"),
    (["--general", "--channels=2x2"], "--general proves every size at once; drop --channels"),
])
def test_bad_channels_or_groups_exit_2_and_write_nothing(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code = main(["report", *argv, "-o", "report.md"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("convgrad report: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_batch_groups_are_refused_by_the_report():
    derivation = derive.derive_conv((2, 1, 3, 3), (2, 1, 2, 2), batch_group_count=2)
    with pytest.raises(ValueError, match=r"batch_group_count \(=2\) and lhs_dilation"):
        case_report(derivation, ["md"])
