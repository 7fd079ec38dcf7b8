"""The comparison report (the same as ``fp8flow check`` prints; names as in docs/check.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mismatch:
    """One differing element: logical coordinates, its scale tile and expert group, the input value, both
    codes (float32 bits for values) with their decoded values (times the tile's scale_inv), the distance in
    ulps (got - want in code order) and the likely cause."""

    row: int
    col: int
    row_tile: int
    col_tile: int
    group: int
    input: float
    precast: float
    got_code: int
    want_code: int
    got_value: float
    want_value: float
    ulp: int
    cause: str
    got_scale_inv: float = 1.0
    want_scale_inv: float = 1.0


def _num(v: Any) -> float:
    return float(v) if not isinstance(v, str) else float(v.replace("inf", "inf"))


@dataclass
class Report:
    """What :func:`fp8flow.compare` found. ``bool(report)`` is ``report.bitexact``; ``str(report)`` the text."""

    bitexact: bool
    what: str
    format: str
    shape: tuple
    elements: int
    elements_mismatched: int
    element_mismatch_fraction: float
    scales: int
    scales_mismatched: int
    scale_mismatch_fraction: float
    max_abs_ulp: int
    causes: dict
    layout: list
    mismatches: list = field(default_factory=list)
    scale_mismatches: list = field(default_factory=list)
    text: str = ""

    @classmethod
    def from_core(cls, js: str, text: str) -> "Report":
        d = json.loads(js)
        mism = []
        for m in d["mismatches"]:
            m = dict(m)
            for k in ("input", "precast", "got_value", "want_value", "got_scale_inv", "want_scale_inv"):
                if k in m:
                    m[k] = _num(m[k])
            mism.append(Mismatch(**m))
        return cls(bitexact=d["bitexact"], what=d["what"], format=d["format"], shape=tuple(d["shape"]),
                   elements=d["elements"], elements_mismatched=d["elements_mismatched"],
                   element_mismatch_fraction=d["element_mismatch_fraction"], scales=d["scales"],
                   scales_mismatched=d["scales_mismatched"], scale_mismatch_fraction=d["scale_mismatch_fraction"],
                   max_abs_ulp=d["max_abs_ulp"], causes=dict(d["causes"]), layout=list(d["layout"]),
                   mismatches=mism, scale_mismatches=list(d["scale_mismatches"]), text=text)

    def __bool__(self) -> bool:
        return self.bitexact

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        """The report as plain data (the JSON of ``fp8flow check --json``, without the check's parameters)."""
        d = {k: getattr(self, k) for k in ("bitexact", "what", "format", "elements", "elements_mismatched",
                                           "element_mismatch_fraction", "scales", "scales_mismatched",
                                           "scale_mismatch_fraction", "max_abs_ulp", "causes", "layout",
                                           "scale_mismatches")}
        d["shape"] = list(self.shape)
        d["mismatches"] = [m.__dict__.copy() for m in self.mismatches]
        return d
