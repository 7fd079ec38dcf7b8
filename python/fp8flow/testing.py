"""pytest helpers: ``assert_bitexact(got, want)`` fails with fp8flow's explaining report."""
from __future__ import annotations

from typing import Any

from . import compare


def assert_bitexact(got: Any, want: Any, **kwargs: Any) -> None:
    """Assert that ``got`` equals ``want`` bit for bit (codes and scales, or float32 values).

    Takes what :func:`fp8flow.compare` takes (a Quantized, a (codes, scale_inv) pair, codes or float32
    values, plus granularity, format, groups, input, ...). On a difference raises ``AssertionError`` whose
    message is the report: how many codes and scales differ, where (row, col, tile, expert group), the input,
    both codes and values, ulps and the likely cause of each."""
    __tracebackhide__ = True  # pytest: show the report, not this frame
    report = compare(got, want, **kwargs)
    if not report.bitexact:
        raise AssertionError("fp8flow: outputs are not bit-exact\n" + report.text)
