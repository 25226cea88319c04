"""``convgrad report`` as a user runs it: the default seed report, options, outputs, bad input.

Expected formulas are the tutorial's (3x3 input X, 2x2 filter F, stride 1), written out by hand
with 0-based indices: O_ij = sum_ab X_{i+a,j+b} F_ab, dL/dF_ab = sum_ij G_ij X_{i+a,j+b}, and
dL/dX = the full convolution of G with rot180(F).
"""

import json
import os
import re
import subprocess
import sys

import pytest

import convgrad.io
from convgrad.cli import main

# The tutorial's formulas, 0-based, in the report's LaTeX spelling.
SEED_LINES = [
    r"O_{0,0} &= X_{0,0}\,F_{0,0} + X_{0,1}\,F_{0,1} + X_{1,0}\,F_{1,0} + X_{1,1}\,F_{1,1}",
    r"O_{1,1} &= X_{1,1}\,F_{0,0} + X_{1,2}\,F_{0,1} + X_{2,1}\,F_{1,0} + X_{2,2}\,F_{1,1}",
    r"\frac{\partial L}{\partial F_{0,1}} &= G_{0,0}\,X_{0,1} + G_{0,1}\,X_{0,2} + G_{1,0}\,X_{1,1}"
    r" + G_{1,1}\,X_{1,2}",
    r"\frac{\partial L}{\partial X_{0,0}} &= G_{0,0}\,F_{0,0}",
    r"\frac{\partial L}{\partial X_{1,1}} &= G_{0,0}\,F_{1,1} + G_{0,1}\,F_{1,0} + G_{1,0}\,F_{0,1}"
    r" + G_{1,1}\,F_{0,0}",
    # The rule's window at (0, 0): rot180(F) over the zero-padded G.
    r"\frac{\partial L}{\partial X_{0,0}} &= 0 \cdot F_{1,1} + 0 \cdot F_{1,0} + 0 \cdot F_{0,1}"
    r" + G_{0,0}\,F_{0,0}",
    r"\tilde{G} = \begin{bmatrix} 0 & 0 & 0 & 0 \\ 0 & G_{0,0} & G_{0,1} & 0 \\ "
    r"0 & G_{1,0} & G_{1,1} & 0 \\ 0 & 0 & 0 & 0 \end{bmatrix}",
    r"\operatorname{rot180}(F) = \begin{bmatrix} F_{1,1} & F_{1,0} \\ F_{0,1} & F_{0,0} \end{bmatrix}",
]


def run(capsys, *argv):
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_default_prints_the_seed_case_as_markdown(capsys):
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert out.startswith("# Backpropagation through a convolution: input 3×3, filter 2×2")
    for line in SEED_LINES:
        assert line in out, line
    assert "Exactly equal: for all 13 entries" in out
    assert out.count("$$") % 2 == 0
    assert out.count("](data:image/png;base64,") == 2  # stdout is not a terminal: figures kept
    errors = [float(x) for x in re.findall(r"\| (\d\.\d\de[-+]\d\d)", out)]
    assert len(errors) == 9 and max(errors) <= 1e-12
    assert "1e-12 × the largest magnitude (at least 1): passed" in out


def test_console_command_of_the_readme():
    result = subprocess.run([sys.executable, "-m", "convgrad.cli", "report"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert SEED_LINES[0] in result.stdout and result.stderr == ""


@pytest.mark.parametrize("module", ["convgrad.cli", "convgrad"])
def test_bad_input_through_python_m_is_one_line_exit_2(module):
    # Run as ``python -m convgrad.cli``, cli.py is loaded twice (as __main__ and as
    # convgrad.cli); the commands' UsageError must still be caught: no traceback.
    result = subprocess.run([sys.executable, "-m", module, "report", "--input", "0x3"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("convgrad report: error: --input (='0x3') must have sizes of "
                             "at least 1\n")


def test_a_reader_that_goes_away_ends_it_quietly():
    # `convgrad report | true`: the pipe is closed before the report is written.
    process = subprocess.Popen([sys.executable, "-m", "convgrad.cli", "report"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and err == b""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_standard_output_is_one_line_exit_1():
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "convgrad.cli", "report"], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr == "convgrad report: error: No space left on device\n"


def test_on_a_terminal_figures_are_left_out_with_a_note(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys)
    assert code == 0 and "data:image" not in out and SEED_LINES[0] in out
    assert err.count("\n") <= 2 and "Figures are left out on a terminal" in err


def test_progress_only_on_a_terminal(capsys, monkeypatch):
    code, _, err = run(capsys, "--input", "9x8", "--filter", "3x2", "--format", "json")
    assert code == 0 and err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, "--input", "9x8", "--filter", "3x2", "--format", "json")
    assert code == 0 and "\rconvgrad report: forward" in err and "derivative" in err


def test_big_case_is_summarised(capsys):
    # 20x20 input, 3x3 filter: dL/dF entries have 18*18 = 324 terms; 400 input entries.
    code, out, _ = run(capsys, "--input", "20x20", "--filter", "3x3", "--format", "md")
    assert code == 0
    assert "Showing 25 of 400 entries: rows 0, 1, 2, 18, 19, columns 0, 1, 2, 18, 19." in out
    assert "324 terms, 311 not shown" in out and r"\cdots" in out
    text = re.sub(r"\(data:image/png;base64,[^)]*\)", "", out)
    assert len(text) < 60_000 and len(out) < 400_000


@pytest.mark.parametrize("suffix, first", [
    (".md", "# Backpropagation"), (".tex", r"\documentclass"), (".html", "<!DOCTYPE html>"),
    (".json", "{"),
])
def test_format_follows_the_file_suffix(capsys, tmp_path, suffix, first):
    target = tmp_path / f"seed{suffix}"
    code, out, err = run(capsys, "-o", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_text().startswith(first)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_several_formats_go_to_a_folder_and_replace_on_rerun(capsys, tmp_path):
    folder = tmp_path / "out"
    for _ in range(2):
        code, _, err = run(capsys, "--format", "md,tex", "--format", "json", "-o", str(folder),
                           "--input", "4x5", "--stride", "2,1")
        assert code == 0 and err == ""
        assert sorted(p.name for p in folder.iterdir()) == ["report.json", "report.md", "report.tex"]
        assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left
    assert json.loads((folder / "report.json").read_text())["stride"] == [2, 1]


def test_interrupted_folder_write_leaves_nothing(capsys, tmp_path, monkeypatch):
    calls = []

    def failing_temporary(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise ValueError("disk full (simulated)")
        return real_temporary(path, data)

    real_temporary = convgrad.io._temporary
    monkeypatch.setattr(convgrad.io, "_temporary", failing_temporary)
    code, _, err = run(capsys, "--format", "md,json", "-o", str(tmp_path / "out"))
    assert code == 2 and "disk full" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--input=3by3"], "--input (='3by3') must be HxW"),
    (["--input=0x2"], "--input (='0x2') must have sizes of at least 1"),
    (["--filter=-2x2"], "--filter (='-2x2') must be HxW"),
    (["--input=3x"], "--input (='3x') must be HxW"),
    (["--stride=0"], "--stride (='0') must have values of at least 1"),
    (["--dilation=-1,1"], "--dilation (='-1,1') must have values of at least 1"),
    (["--padding=-1"], "--padding (='-1') must not be negative"),
    (["--padding=1:2:3"], "--padding (='1:2:3') must be VALID"),
    (["--filter=4x3"], "the dilated filter (=(4, 3)) must fit in the padded, dilated input"),
    (["--filter=2x2", "--dilation=3"], "the dilated filter (=(4, 4)) must fit"),
    (["--format=pdf"], "--format (='pdf') must be one of md, tex, html, json"),
    (["--format=md,html"], "several formats (=md, html) need -o FOLDER"),
    (["--general", "--input=4x4"], "--general proves every size at once; drop --input"),
    (["--general", "--seed=7"], "--general proves every size at once; drop --seed"),
    (["--seed=-1"], "--seed (=-1) must be a non-negative integer"),
    (["-o", ""], "-o (='') must name a file or a folder"),
    (["--padding=100000000000000000000"], "must have values of at most 4096"),
    (["--stride=1,5000"], "--stride (='1,5000') must have values of at most 4096"),
    # 998 x 998 outputs, 9 taps: far beyond what a report derives entry by entry in seconds.
    (["--input=1000x1000", "--filter=3x3"], "the case has 8,964,036 products to derive"),
    (["--input=64x64", "--channels=8x8"], "the case has 1,016,064 products to derive"),
    # Few products, many cells: one output (a 1,025 x 1,025 padded array), or a window dilated
    # to 61 x 61 on 4 x 4 channels (each axis 3 + 60 + 61; 16 filter planes).
    (["--input=1024x1024", "--filter=1x1", "--stride=1024"],
     "the case's padded arrays have up to 1,050,625 cells"),
    (["--input=3x3", "--filter=3x3", "--dilation=30", "--padding=SAME", "--channels=4x4"],
     "the case's padded arrays have up to 246,016 cells"),
])
def test_bad_input_is_one_line_exit_2_no_file(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("convgrad report: error: ")
    assert message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing/report.md", "file/report.md", "file"])
def test_unwritable_output_is_one_line_exit_2_no_file(capsys, tmp_path, where):
    (tmp_path / "file").write_text("not a folder")
    extra = ["--format", "md,json"] if where == "file" else []
    code, out, err = run(capsys, *extra, "-o", str(tmp_path / where))
    assert code == 2 and out == "" and err.count("\n") == 1 and "-o (=" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert (tmp_path / "file").read_text() == "not a folder"


def test_a_path_ending_in_a_slash_is_a_folder_for_one_format_too(capsys, tmp_path):
    code, _, err = run(capsys, "--format", "html", "-o", f"{tmp_path / 'new'}/")
    assert code == 0 and err == ""
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["report.html"]
    (tmp_path / "file").write_text("mine")
    code, _, err = run(capsys, "-o", f"{tmp_path / 'file'}/")
    assert code == 2 and err.count("\n") == 1 and "must be a folder, not a file" in err
    assert (tmp_path / "file").read_text() == "mine"


def test_a_folder_in_the_way_of_one_format_replaces_none(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old")
    (out / "report.json").mkdir()
    code, _, err = run(capsys, "--format", "md,json", "-o", str(out))
    assert code == 2 and err.count("\n") == 1 and "report.json') is a folder, not a file" in err
    assert (out / "report.md").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]


def test_a_long_file_name_is_written(capsys, tmp_path):
    # The temporary file beside it has a longer name; it must still be a valid one.
    target = tmp_path / ("a" * 240 + ".md")
    code, _, err = run(capsys, "-o", str(target))
    assert code == 0 and err == ""
    assert "O_{0,0}" in target.read_text() and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_refused(capsys, tmp_path):
    tmp_path.chmod(0o500)
    try:
        code, _, err = run(capsys, "-o", str(tmp_path / "r.md"))
    finally:
        tmp_path.chmod(0o700)
    assert code == 2 and "is not writable" in err


def test_general_proofs_report(capsys):
    code, out, err = run(capsys, "--general")
    assert code == 0 and err == ""
    for title in ("## Stride 1", "## Symbolic dilation d", "## Symbolic stride s",
                  "## Symbolic padding p", "## Stride, dilations and padding at once"):
        assert f"{title} (1-D)" in out and f"{title} (2-D)" in out
    assert out.count("Verified: the symbolic steps went through") == 10
    assert "NOT verified" not in out
    # Both identities of each proof, with the derivative written as a partial derivative.
    assert out.count(r"\frac{\partial L}{\partial {X}_{j}} =") >= 5
    assert out.count("$$") % 2 == 0
