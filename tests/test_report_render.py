"""The human formats of a report: Markdown structure, LaTeX compiled by pdflatex, HTML (MathML)
rendered by a real headless Chromium, and the figures' geometry.

pdflatex and Chromium come from the system (Debian: texlive-latex-base,
texlive-latex-recommended, chromium); their tests skip, with the reason, where they are absent.
"""

import base64
import functools
import io
import re
import shutil
import subprocess
import xml.dom.minidom

import numpy as np
import pytest
import sympy as sp
from PIL import Image

import derive
from convgrad.report import case_report, figures, general_report
from convgrad.report.mathtext import expression

NON_SQUARE = dict(input_shape=(5, 4), filter_shape=(2, 3), stride=(2, 1),
                  padding=((1, 0), (0, 2)), dilation=(2, 1))
# Negative padding crops the input (derive takes it; the command line does not).
CROPPED = dict(input_shape=(4, 9), filter_shape=(1, 4), stride=(1, 3),
               padding=((-1, 2), (2, -1)))
CASES = {"seed": {}, "non-square": NON_SQUARE, "cropped": CROPPED}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFLATEX = shutil.which("pdflatex")


@functools.cache
def derivation(case):
    return derive.seed_case() if case == "seed" else derive.derive_2d(**CASES[case])


@functools.cache
def texts(case):
    return case_report(derivation(case), ["md", "tex", "html"])


@pytest.mark.parametrize("case", CASES)
def test_markdown_math_is_balanced_and_figures_embedded(case):
    markdown = texts(case)["md"]
    displays = re.findall(r"^\$\$\n(.*?)\n\$\$$", markdown, flags=re.S | re.M)
    assert len(displays) >= 8 and markdown.count("$$") == 2 * len(displays)
    for block in displays:
        assert block.count(r"\begin{") == block.count(r"\end{")
        assert block.count("{") == block.count("}")
    images = re.findall(r"\]\(data:image/png;base64,([^)]+)\)", markdown)
    assert len(images) == 2
    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).size[0] > 300


@pytest.mark.parametrize("case", CASES)
def test_html_is_self_contained_and_its_mathml_well_formed(case):
    page = texts(case)["html"]
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert re.findall(r'src="([a-z]+):', page) == ["data", "data"]
    assert "&lt;mi" not in page and r"\frac" not in page
    formulas = re.findall(r"<math[^>]*>.*?</math>", page, flags=re.S)
    assert len(formulas) > 50
    for formula in formulas:
        xml.dom.minidom.parseString(formula)
        assert "mfenced" not in formula


def test_general_report_mathml_keeps_every_sum_limit_and_piecewise():
    proof = derive.general_proof("stride", sizes=[(derive.Sizes(n=5, k=2, s=2),)])
    page = general_report([proof], ["html"])["html"]
    for formula in re.findall(r"<math[^>]*>.*?</math>", page, flags=re.S):
        xml.dom.minidom.parseString(formula)
    assert "piecewise" not in page.lower() and "&#x2146;" not in page  # no SymPy fallbacks
    assert "<mtext>otherwise</mtext>" in page  # the Piecewise of the closed form
    # Step 3 sums over r, t and y: three sum signs with their limits.
    distribute = next(step for text, step in proof.steps if text.startswith("Distribute"))
    assert expression(distribute).mathml.count("<munderover><mo>&#8721;</mo>") == 3


@pytest.mark.parametrize("case", CASES)
def test_figure_windows_give_the_output_and_the_derivative(case):
    """The cells each figure panel marks, times the filter taps, sum to O[i, j] (forward) and to
    dL/dX[p, q] from differentiation (rule): the pictures show the right windows."""
    d = derivation(case)
    padded = figures.padded_input(d)
    for i in range(d.output_shape[0]):
        for j in range(d.output_shape[1]):
            total = sum(padded[r, c] * d.F[a, b] for (r, c), (a, b) in figures.forward_taps(d, i, j))
            assert sp.expand(total - d.O[i, j]) == 0, (i, j)
    for p in range(d.input_shape[0]):
        for q in range(d.input_shape[1]):
            taps = figures.rule_taps(d, p, q)
            total = sum(d.padded_G[r, c] * d.rotated_F[u, v] for (r, c), (u, v) in taps)
            assert sp.expand(total - d.dL_dX[p, q]) == 0, (p, q)


def test_a_long_window_is_drawn_from_its_start():
    """A window dilated to 61 x 61 cells is shown as its first LABEL_LIMIT cells per axis and a
    margin of 2, the heading saying which part (drawing all of it took 80 s and 800 MB)."""
    d = derive.derive_2d((3, 3), (3, 3), padding="SAME", dilation=(30, 30))
    window = [panel for row in figures.forward_panels(d) for panel in row
              if panel is not None and panel.title.startswith("$O_")]
    assert window and all(panel.cells.shape == (63, 63) for panel in window)
    for panel in window:
        rows, cols = panel.view
        assert len(rows) <= figures.LABEL_LIMIT + 4 and len(cols) <= figures.LABEL_LIMIT + 4
        assert f"of {panel.cells.rows}×{panel.cells.cols}" in panel.heading
    assert figures.forward_figure(d).startswith(b"\x89PNG")


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base)")
@pytest.mark.parametrize("case", [*CASES, "general", "general 2-D"])
def test_latex_compiles_with_pdflatex(case, tmp_path):
    if case.startswith("general"):
        # The 2-D proof's equations are up to 22 cm wider than the page: scaled to fit.
        proof = (derive.general_proof("padding", 2) if case.endswith("2-D") else
                 derive.general_proof("padding", sizes=[(derive.Sizes(n=4, k=2, lo=1, hi=1),)]))
        source = general_report([proof], ["tex"])["tex"]
    else:
        source = texts(case)["tex"]
        assert source.count(r"\cellcolor[HTML]{F59F00}") >= 8  # the figures' taps, as tables
    (tmp_path / "report.tex").write_text(source)
    result = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error",
                             "-no-shell-escape", "report.tex"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    log = (tmp_path / "report.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log


def _screenshot(html, folder, name):
    page, shot = folder / f"{name}.html", folder / f"{name}.png"
    page.write_text(html)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={folder / ('profile-' + name)}", "--hide-scrollbars",
                    "--force-device-scale-factor=2", "--window-size=900,2200",
                    f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return np.asarray(Image.open(shot).convert("L"), dtype=np.int16)


def fraction_bars(gray):
    """Thin dark horizontal strokes 40-300 device px long, light 3 px above and below: fraction
    bars. No glyph of the page's text has a stroke that long and thin (an "=" is about 22 px)."""
    dark = gray < 110
    bars = 0
    for y in range(3, gray.shape[0] - 3):
        runs = np.flatnonzero(np.diff(np.concatenate(([0], dark[y].astype(np.int8), [0]))))
        for start, stop in zip(runs[::2], runs[1::2], strict=True):
            clear = ~dark[y - 3, start:stop].any() and ~dark[y + 3, start:stop].any()
            if 40 <= stop - start <= 300 and clear and not dark[y - 1, start:stop].all():
                bars += 1
    return bars


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: chromium)")
def test_html_renders_math_in_headless_chromium(tmp_path):
    page = re.sub(r"<figure>.*?</figure>", "", texts("seed")["html"], flags=re.S)
    # The same page with MathML taken away: the math elements become unknown inline elements,
    # which is what a browser without MathML (or raw markup shown as text) looks like.
    flat = page.replace("<math", "<span").replace("</math>", "</span>")
    rendered, stripped = _screenshot(page, tmp_path, "mathml"), _screenshot(flat, tmp_path, "flat")
    assert rendered.shape == stripped.shape and (rendered < 110).mean() > 0.005  # not blank
    # 13 displayed derivatives dL/dF_ab, dL/dX_pq (from differentiation) and more from the
    # rule are above the fold: each a stacked fraction with a bar.
    assert fraction_bars(rendered) >= 12
    assert fraction_bars(stripped) == 0
