"""docs/python.md's pytest example, run as written: the python code blocks of its section "Checking a kernel
in pytest" are executed and their test functions called (a torch version of the kernel too, when torch is
installed)."""
import os
import re

import numpy as np
import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "python.md")


def _example_namespace():
    text = open(DOC, encoding="utf-8").read()
    section = text.split("## Checking a kernel in pytest", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/python.md: no python block in 'Checking a kernel in pytest'"
    ns = {"__name__": "docs_example"}
    for b in blocks:
        exec(compile(b, DOC, "exec"), ns)
    return ns


def test_docs_example_matches():
    _example_namespace()["test_my_quantize_matches"]()


def test_docs_example_buggy_kernel_report(capsys):
    _example_namespace()["test_my_buggy_quantize_is_explained"]()
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "tile_scale" in out and "tile (3,0)" in out


def test_docs_example_with_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed; the torch version of the example "
                                                "kernel needs a CPU torch")
    import fp8flow
    from fp8flow.testing import assert_bitexact

    def torch_quantize(x):
        rows, cols = x.shape
        blocks = x.view(rows, cols // 128, 128)
        amax = blocks.abs().amax(dim=2)
        scale = (448.0 / amax).float()
        scale = (scale.view(torch.int32) & 0x7F800000).view(torch.float32)
        y = torch.clamp(blocks * scale[:, :, None], -448, 448).view(rows, cols)
        return y.to(torch.float8_e4m3fn), (1.0 / scale).float()

    x = torch.randn(128, 256)
    codes, si = torch_quantize(x)
    assert_bitexact((codes, si), fp8flow.quantize(x), input=x.numpy())
    bad = codes.view(torch.uint8).clone()
    bad[7, 9] ^= 1
    rep = fp8flow.compare((bad, si), fp8flow.quantize(x))
    assert rep.elements_mismatched == 1 and (rep.mismatches[0].row, rep.mismatches[0].col) == (7, 9)
    assert np.array_equal(codes.view(torch.uint8).numpy(), fp8flow.quantize(x).codes)
