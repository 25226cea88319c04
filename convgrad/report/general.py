"""The report of derive's symbolic-size proofs (``convgrad report --general``).

One section per proof kind: the claim, the two proven identities, every step of the proof (each
an equation), the closed forms with the strided delta solved, and the concrete sizes on which
every step was also evaluated and compared with the concrete derivation.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import sympy as sp

from convgrad.report import mathtext as mt
from convgrad.report.jsondata import versions
from convgrad.report.model import Block, DisplayMath, Document, Heading, Paragraph

KIND_TITLES = {
    "stride1": "Stride 1",
    "dilation": "Symbolic dilation d",
    "stride": "Symbolic stride s",
    "padding": "Symbolic padding p",
    "general": "Stride, dilations and padding at once",
}


def _axis(sizes: Any) -> dict[str, Any]:
    """One axis's sizes (a ``derive.Sizes`` dataclass) as a dictionary."""
    return dataclasses.asdict(sizes)


def _sizes_text(sample: Sequence[Any]) -> str:
    return " × ".join(", ".join(f"{key}={value}" for key, value in _axis(axis).items())
                      for axis in sample)


def _proof_blocks(proof: Any) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, f"{KIND_TITLES.get(proof.kind, proof.kind)} ({proof.ndim}-D)"),
        Paragraph((proof.statement,)),
        Paragraph(("Proven identities:",)),
        *(DisplayMath(mt.expression(identity)) for identity in proof.identities),
        Heading(3, "Steps"),
    ]
    for number, (description, equation) in enumerate(proof.steps, start=1):
        blocks += [Paragraph((f"{number}. {description}",)), DisplayMath(mt.expression(equation))]
    blocks.append(Heading(3, "Closed forms"))
    for description, equation in proof.closed_forms:
        blocks += [Paragraph((description,)), DisplayMath(mt.expression(equation))]
    verdict = ("Verified: the symbolic steps went through, and every step agreed with the "
               f"concrete derivation at all {len(proof.checked_sizes)} size tuples: "
               if proof.verified else
               f"NOT verified: {'; '.join(proof.failures)}. Sizes checked: ")
    sizes = "; ".join(_sizes_text(sample) for sample in proof.checked_sizes)
    return [*blocks, Heading(3, "Check"), Paragraph((verdict + sizes + ".",))]


def general_document(proofs: Sequence[Any]) -> Document:
    """The document of several ``derive.GeneralProof`` objects."""
    blocks: list[Block] = [
        Paragraph(("Each proof treats the sizes (input n, filter k, output m, and the named "
                   "options) as symbols: the gradient from differentiating L is turned, step by "
                   "step, into the same sum as the rotated-filter rule, so the rule holds for "
                   "every size at once. Each kind is proved for one spatial axis (1-D) and again "
                   "for two (2-D, images), where every size is a symbol per axis and every sum "
                   "runs over both axes.",)),
    ]
    for proof in proofs:
        blocks += _proof_blocks(proof)
    return Document("The rotated-filter rule for every size: symbolic proofs", blocks)


def general_data(proofs: Sequence[Any]) -> dict[str, Any]:
    """The JSON object of the proofs: per kind its statement, steps (as SymPy text) and checks."""
    return {
        "proofs": [
            {
                "kind": proof.kind,
                "ndim": proof.ndim,
                "statement": proof.statement,
                "identities": [sp.sstr(identity) for identity in proof.identities],
                "steps": [{"description": text, "equation": sp.sstr(eq)} for text, eq in proof.steps],
                "closed_forms": [{"description": text, "equation": sp.sstr(eq)}
                                 for text, eq in proof.closed_forms],
                "checked_sizes": [[_axis(axis) for axis in sample]
                                  for sample in proof.checked_sizes],
                "verified": bool(proof.verified),
                "failures": list(proof.failures),
            }
            for proof in proofs
        ],
        "versions": versions(),
    }
