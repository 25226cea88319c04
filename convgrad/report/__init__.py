r"""Derivation reports: one document model, rendered as Markdown, LaTeX, HTML (MathML) or JSON.

:func:`case_report` writes one concrete case, a ``derive.Derivation2D`` (single channel) or a
2-D ``derive.ConvDerivation`` (batch, channels, feature groups; NCHW / OIHW), in every format
asked for; :func:`general_report` writes derive's symbolic-size proofs. The command ``convgrad report``
is the front end (``convgrad/commands/report.py``).

>>> import derive
>>> texts = case_report(derive.seed_case(), ["json"])
>>> import json; json.loads(texts["json"])["dL_dX"][1][1]
'F_0_0*G_1_1 + F_0_1*G_1_0 + F_1_0*G_0_1 + F_1_1*G_0_0'
"""

from collections.abc import Sequence
from typing import Any

from convgrad.report import htmlpage, jsondata, latex, markdown
from convgrad.report.case import case_document
from convgrad.report.channels import channels_document, check_supported
from convgrad.report.general import general_data, general_document
from convgrad.report.model import Document
from convgrad.report.numeric import CrossCheck, cross_check
from derive import ConvDerivation

FORMATS = {"md": ".md", "tex": ".tex", "html": ".html", "json": ".json"}
RENDERERS = {"md": markdown.render, "tex": latex.render, "html": htmlpage.render}

__all__ = ["FORMATS", "CrossCheck", "case_report", "cross_check", "general_report"]


def _check_formats(formats: Sequence[str]) -> None:
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"format (={name!r}) must be one of {', '.join(FORMATS)}")


def _render_document(document: Document, formats: Sequence[str]) -> dict[str, str]:
    return {name: RENDERERS[name](document) for name in formats if name in RENDERERS}


def case_report(derivation: Any, formats: Sequence[str], *, figures: bool = True,
                seed: int = 0) -> dict[str, str]:
    """The report of one case in each of ``formats`` (``"md"``, ``"tex"``, ``"html"``, ``"json"``).

    ``derivation`` is a ``derive.Derivation2D`` or a ``derive.ConvDerivation`` with two spatial
    axes, feature groups only and no lhs dilation (else ``ValueError``); ``figures`` False leaves
    the pictures out of the Markdown and HTML; ``seed`` picks the random numbers of the numeric
    cross-check.
    """
    _check_formats(formats)
    multi_channel = isinstance(derivation, ConvDerivation)
    if multi_channel:
        check_supported(derivation)
    check = cross_check(derivation, seed)
    texts = {}
    if any(name in RENDERERS for name in formats):
        build = channels_document if multi_channel else case_document
        document = build(derivation, check, with_figures=figures)
        texts.update(_render_document(document, formats))
    if "json" in formats:
        texts["json"] = jsondata.render(jsondata.case_data(derivation, check))
    return {name: texts[name] for name in formats}


def general_report(proofs: Sequence[Any], formats: Sequence[str]) -> dict[str, str]:
    """The report of ``derive.GeneralProof`` objects in each of ``formats``."""
    _check_formats(formats)
    texts = _render_document(general_document(proofs), formats)
    if "json" in formats:
        texts["json"] = jsondata.render(general_data(proofs))
    return {name: texts[name] for name in formats}
