"""The bindings against independent oracles (ml_dtypes, numpy kernels written from the sources' code)."""
import threading
import time

import ml_dtypes as md
import numpy as np
import pytest

import fp8flow
from user_kernels import fork_sat, te_pow2_1x128

RNG = np.random.default_rng(7)
ML = {"e4m3": md.float8_e4m3fn, "e5m2": md.float8_e5m2, "e4m3fnuz": md.float8_e4m3fnuz,
      "e5m2fnuz": md.float8_e5m2fnuz}
MAX = {"e4m3": 448.0, "e5m2": 57344.0, "e4m3fnuz": 240.0, "e5m2fnuz": 57344.0}


def wide(shape):
    return (RNG.standard_normal(shape) * np.exp2(RNG.uniform(-20, 18, shape))).astype(np.float32)


@pytest.mark.parametrize("fmt", list(ML))
def test_encode_matches_ml_dtypes(fmt):
    x = wide((3, 1000))
    got = fp8flow.encode(x, fmt, round="rne", overflow="satfinite")
    want = np.clip(x, -MAX[fmt], MAX[fmt]).astype(ML[fmt]).view(np.uint8)
    assert got.dtype == np.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got, want)
    nonsat = fp8flow.convert(x, fmt, overflow="nonsat")
    np.testing.assert_array_equal(nonsat, x.astype(ML[fmt]).view(np.uint8))
    # the outputs read as ml_dtypes values
    assert np.array_equal(got.view(ML[fmt]).astype(np.float32), want.view(ML[fmt]).astype(np.float32), equal_nan=True)


@pytest.mark.parametrize("fmt", list(ML))
def test_decode_all_codes(fmt):
    codes = np.arange(256, dtype=np.uint8)
    got = fp8flow.decode(codes, fmt)
    want = codes.view(ML[fmt]).astype(np.float32)
    np.testing.assert_array_equal(got, want)  # NaN == NaN for assert_array_equal
    assert fp8flow.decode(codes.view(ML[fmt])).dtype == np.float32  # format from the dtype
    np.testing.assert_array_equal(fp8flow.decode(codes, fmt, dtype=np.float64), want.astype(np.float64))


def test_encode_bf16_and_ue8m0():
    x = wide((500,))
    np.testing.assert_array_equal(fp8flow.encode(x, "bf16"), x.astype(md.bfloat16).view(np.uint16))
    s = np.exp2(RNG.integers(-30, 30, 100)).astype(np.float32)
    np.testing.assert_array_equal(fp8flow.encode(s, "ue8m0", round="rz"), (np.log2(s) + 127).astype(np.uint8))


def test_quantize_matches_te_kernel_and_dequantize():
    x = wide((96, 384))
    codes, si = te_pow2_1x128(x)
    q = fp8flow.quantize(x, "quant_1x128_e4m3_te_pow2")
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.scale_inv, si)
    assert q.meta["recipe"] == "quant_1x128_e4m3_te_pow2" and q.meta["scale_shape"] == (96, 3)
    c2, s2, meta = fp8flow.quantize(x, format="e4m3", granularity="1x128", scale="te_pow2")  # unpacks
    np.testing.assert_array_equal(c2, codes)
    deq = fp8flow.dequantize(q)
    want = (codes.view(md.float8_e4m3fn).astype(np.float32) * np.repeat(si, 128, axis=1)).astype(np.float32)
    np.testing.assert_array_equal(deq, want)
    np.testing.assert_array_equal(fp8flow.dequantize(codes, si, granularity="1x128"), want)
    assert q.values().dtype == md.float8_e4m3fn


def test_quantize_groups_eps_ue8m0():
    x = wide((300, 256))
    q = fp8flow.quantize(x, granularity="128x128", scale="te_pow2", groups=[100, 150, 50], eps=1e-10)
    assert q.scale_inv.shape == (1 + 2 + 1, 2) and q.meta["row_groups"] == [100, 150, 50]
    # group tiles restart: quantizing each group alone gives the same bytes
    r0 = 0
    for m in (100, 150, 50):
        g = fp8flow.quantize(x[r0:r0 + m], granularity="128x128", scale="te_pow2", eps=1e-10)
        np.testing.assert_array_equal(q.codes[r0:r0 + m], g.codes)
        r0 += m
    u = fp8flow.quantize(x, granularity="1x32", scale="mx_floor", scale_format="ue8m0")
    assert u.scale_inv.dtype == np.uint8
    with pytest.raises(ValueError, match="groups|sum"):
        fp8flow.quantize(x, groups=[1, 2])
    with pytest.raises(ValueError, match="eps"):
        fp8flow.quantize(x, scale="deepgemm", eps=1e-4)


@pytest.mark.parametrize("groups", [None, [150, 106, 256]])
def test_transpose_paper_kernel_matches_fork(groups):
    rows = 512
    x = wide((rows, 256))
    codes, si = te_pow2_1x128(x)
    t = fp8flow.transpose(codes, si, "paper_kernel", groups=groups)
    cols, csis = fork_sat(codes, si, groups or [rows])
    np.testing.assert_array_equal(t.codes, np.concatenate(cols, axis=1))
    np.testing.assert_array_equal(t.scale_inv, np.concatenate(csis, axis=0))
    assert t.meta["codes_layout"] == "transposed"
    e = fp8flow.transpose(fp8flow.quantize(x), method="exact", groups=groups)
    assert e.codes.shape == (256, rows)
    d = fp8flow.transpose(None, method="direct", x=x, groups=groups)
    assert d.scale_inv.shape == t.scale_inv.shape
    n = fp8flow.transpose(codes, si, "naive", groups=groups)
    assert n.codes.shape == (256, rows)


def test_gemm_exact_matches_float64():
    a = RNG.integers(0x30, 0x48, (16, 256)).astype(np.uint8)
    b = RNG.integers(0x30, 0x48, (8, 256)).astype(np.uint8)
    sa = np.exp2(RNG.integers(-3, 3, (16, 2))).astype(np.float32)
    sb = np.exp2(RNG.integers(-3, 3, (8, 2))).astype(np.float32)
    av = a.view(md.float8_e4m3fn).astype(np.float64) * np.repeat(sa, 128, axis=1)
    bv = b.view(md.float8_e4m3fn).astype(np.float64) * np.repeat(sb, 128, axis=1)
    out = fp8flow.gemm(a, b, sa, sb, granularity_a="1x128", granularity_b="1x128", accum="exact")
    np.testing.assert_array_equal(out, (av @ bv.T).astype(np.float32))
    seq = fp8flow.gemm(a, b, sa, sb, granularity_a="1x128", granularity_b="1x128", accum="fp32_seq")
    assert seq.shape == (16, 8) and seq.dtype == np.float32


def test_threads_and_gil():
    x = wide((2048, 2048))
    fp8flow.set_threads(1)
    assert fp8flow.get_threads() == 1
    one = fp8flow.quantize(x, granularity="128x128")
    fp8flow.set_threads(2)
    two = fp8flow.quantize(x, granularity="128x128")
    fp8flow.set_threads(0)
    np.testing.assert_array_equal(one.codes, two.codes)
    with pytest.raises(ValueError):
        fp8flow.set_threads(-1)
    # The GIL is released: another Python thread runs while quantize works.
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    th = threading.Thread(target=tick)
    th.start()
    time.sleep(0.01)
    n0 = len(ticks)
    t0 = time.perf_counter()
    for _ in range(5):
        fp8flow.quantize(x, granularity="128x128", scale="te_fp32")  # golden 128x128 loops: slow
    t1 = time.perf_counter()
    done.set()
    th.join()
    during = [t for t in ticks[n0:] if t0 < t < t1]
    assert t1 - t0 > 0.05 and len(during) >= 5, (t1 - t0, len(during))


def test_errors_name_the_value():
    x = np.ones((4, 128), np.float32)
    with pytest.raises(ValueError, match="nope"):
        fp8flow.quantize(x, format="nope")
    with pytest.raises(ValueError, match="granularity|128"):
        fp8flow.quantize(x, granularity="128")
    with pytest.raises(ValueError, match="2-D"):
        fp8flow.quantize(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="direct"):
        fp8flow.transpose(np.zeros((4, 128), np.uint8), np.ones((4, 1), np.float32), "direct")
    with pytest.raises(ValueError, match="scale_inv"):
        fp8flow.dequantize(np.zeros((4, 128), np.uint8), np.ones((3, 1), np.float32), granularity="1x128")


def test_type_stubs_up_to_date(tmp_path):
    """python/fp8flow/_core.pyi is what nanobind's stubgen writes for the module as built (regenerate with
    `PYTHONPATH=build/python .venv/bin/python -m nanobind.stubgen -m fp8flow._core -o python/fp8flow/_core.pyi`,
    then drop the commit from `git_commit`)."""
    import os
    import re

    stubgen = pytest.importorskip("nanobind.stubgen", reason="nanobind is not installed")
    out = tmp_path / "_core.pyi"
    stubgen.main(["-q", "-m", "fp8flow._core", "-o", str(out)])
    norm = lambda s: re.sub(r"^git_commit: str.*$", "git_commit: str", s, flags=re.M)  # noqa: E731
    committed = os.path.join(os.path.dirname(__file__), "..", "..", "python", "fp8flow", "_core.pyi")
    assert norm(out.read_text()) == norm(open(committed).read())


def test_run_dataflow_consistent_with_the_single_operations():
    rng = np.random.default_rng(3)
    T, H, F, E, K = 64, 128, 64, 4, 2
    x, dy = rng.standard_normal((T, H)), rng.standard_normal((T, H))
    wr = rng.standard_normal((E, H)) * 0.1
    w1, w2 = rng.standard_normal((E, 2 * F, H)) * 0.05, rng.standard_normal((E, H, F)) * 0.05
    out = fp8flow.run_dataflow("fp8_flow", x, wr, w1, w2, dy, topk=K, align=16)
    xp, col = out["xp"], out["xp.col"]
    assert xp["prec"] == "fp8" and sum(xp["groups"]) == xp["values"].shape[0]
    # the layer's column copy is the paper kernel's transpose of its rowwise tensor, per expert group
    t = fp8flow.transpose(xp["quantized"], method="paper_kernel", groups=xp["groups"])
    np.testing.assert_array_equal(t.codes, col["quantized"].codes)
    np.testing.assert_array_equal(t.scale_inv, col["quantized"].scale_inv)
    np.testing.assert_array_equal(fp8flow.dequantize(xp["quantized"]).astype(np.float64), xp["values"])
    # overriding the transpose to exact changes only what it must, and fp64 has no FP8 tensor
    ex = fp8flow.run_dataflow("fp8_flow", x, wr, w1, w2, dy, topk=K, align=16, transpose="exact")
    np.testing.assert_array_equal(ex["xp"]["quantized"].codes, xp["quantized"].codes)
    ref = fp8flow.run_dataflow("fp64", x, wr, w1, w2, dy, topk=K, align=16)
    assert all(v["prec"] != "fp8" for v in ref.values())
    with pytest.raises(ValueError, match="w2"):
        fp8flow.run_dataflow("fp8_flow", x, wr, w1, w2[:, :, :3], dy, topk=K, align=16)
