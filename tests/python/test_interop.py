"""Inputs from ml_dtypes arrays and CPU torch tensors (torch tests skip, with the reason, without torch)."""
import ml_dtypes as md
import numpy as np
import pytest

import fp8flow

RNG = np.random.default_rng(5)


def test_ml_dtypes_bfloat16_input_sets_input_dtype():
    x = (RNG.standard_normal((8, 256)) * 3).astype(md.bfloat16)
    q = fp8flow.quantize(x, scale="te_fp32")
    want = fp8flow.quantize(x.astype(np.float32), scale="te_fp32", input_dtype="bf16")
    np.testing.assert_array_equal(q.codes, want.codes)
    np.testing.assert_array_equal(q.scale_inv, want.scale_inv)
    # te_fp32 clamps an infinite scale (448 / tiny amax) to the input dtype's max: bf16 and f32 differ
    z = np.full((1, 128), 1e-39, np.float32).astype(md.bfloat16)
    assert fp8flow.quantize(z, scale="te_fp32").scale_inv[0, 0] != fp8flow.quantize(
        z.astype(np.float32), scale="te_fp32").scale_inv[0, 0]


def test_ml_dtypes_float8_codes():
    x = (RNG.standard_normal((4, 128)) * 10).astype(np.float32)
    q = fp8flow.quantize(x)
    as_f8 = q.codes.view(md.float8_e4m3fn)
    np.testing.assert_array_equal(fp8flow.dequantize(as_f8, q.scale_inv, granularity="1x128"), fp8flow.dequantize(q))
    t = fp8flow.transpose(as_f8, q.scale_inv, "exact")
    assert t.codes.dtype == np.uint8 and t.codes.shape == (128, 4)
    with pytest.raises(ValueError, match="e5m2"):
        fp8flow.dequantize(as_f8, q.scale_inv, granularity="1x128", format="e5m2")
    e5 = fp8flow.encode(x, "e5m2").view(md.float8_e5m2)
    np.testing.assert_array_equal(fp8flow.decode(e5), e5.astype(np.float32))


def test_zero_copy_when_layout_fits():
    from fp8flow._arrays import as_codes, as_float32

    x = np.ones((4, 128), np.float32)
    a, _ = as_float32(x, "x")
    assert np.shares_memory(a, x)
    c = np.zeros((4, 128), np.uint8).view(md.float8_e4m3fn)
    cc, fmt = as_codes(c, None, "c")
    assert fmt == "e4m3" and np.shares_memory(cc, c)
    xt = np.ones((128, 4), np.float32).T  # not C-contiguous: copied
    assert not np.shares_memory(as_float32(xt, "x")[0], xt)


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (PyPI's torch pulls GBs of CUDA wheels); "
                                               "the torch interop tests need a CPU torch")


def test_torch_float32_bfloat16_float8(torch):
    x = torch.randn(8, 256) * 4
    q = fp8flow.quantize(x)
    np.testing.assert_array_equal(q.codes, fp8flow.quantize(x.numpy()).codes)
    xb = x.to(torch.bfloat16)
    qb = fp8flow.quantize(xb, scale="te_fp32")
    np.testing.assert_array_equal(qb.codes, fp8flow.quantize(xb.float().numpy(), scale="te_fp32",
                                                             input_dtype="bf16").codes)
    if hasattr(torch, "float8_e4m3fn"):
        f8 = torch.from_numpy(q.codes).view(torch.float8_e4m3fn)
        np.testing.assert_array_equal(fp8flow.dequantize(f8, torch.from_numpy(q.scale_inv), granularity="1x128"),
                                      fp8flow.dequantize(q))
        # torch's own cast (nonsat) against fp8flow's encode with the same policy
        y = torch.randn(1000) * 100
        np.testing.assert_array_equal(y.to(torch.float8_e4m3fn).view(torch.uint8).numpy(),
                                      fp8flow.encode(y, "e4m3", overflow="nonsat"))
    with pytest.raises(ValueError, match="cpu|CPU"):
        if torch.cuda.is_available():
            fp8flow.quantize(x.cuda())
        else:
            raise ValueError("skip: no CUDA device; CPU only")
