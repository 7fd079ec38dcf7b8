#!/usr/bin/env python3
"""Independent numpy + ml_dtypes oracle for `fp8flow quantize` (issue 5).

Written from the pseudo-code of PAPER.md section 3, not from fp8flow's C++:
  te_fp32 / te_pow2   TransformerEngine Float8BlockQuantizer (1x128, 128x128; eps)      section 3.1
  deepgemm(_ue8m0)    DeepGEMM per_token_cast_to_fp8 / per_block_cast_to_fp8 (torch on CUDA) section 3.2
  deepgemm(_ue8m0)_cpu  the same run by torch on the CPU (amax / 448 divides)
  paper_swiglu        FP8-Flow-MoE SwiGLU+quant, quantize-given-y (division modelled RN32)  section 3.3
  mx_floor / mx_ceil  OCP MX shared exponent / NVIDIA MXFP8 (1x32)                       section 3.4
Each case writes a float32 .npy, runs `fp8flow quantize` and compares codes and scale_inv bit for bit.

Conventions modelled (PAPER.md section 4):
  * ml_dtypes' float32 -> float8_e4m3fn astype is RNE, non-saturating, sign kept on overflow/NaN.
    cvt_sat (TE, Triton, MX) = that cast with overflow/Inf clipped to +-0x7E, NaN -> 0x7F (CUDA's cvt).
  * torch on CUDA (DeepGEMM): arithmetic NaN results are the canonical +NaN -> 0x7F; the cast keeps the
    sign of an overflowing non-NaN value (-Inf -> 0xFF).

Usage: te_deepgemm_oracle.py FP8FLOW_BINARY WORKDIR     (exit 0 pass, 1 mismatch)
"""
import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np

F32 = np.float32
E4M3 = ml_dtypes.float8_e4m3fn
FMAX = F32(448.0)
FLT_MAX = F32(np.finfo(np.float32).max)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def from_bits(b):
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def cast_nonsat(y):
    """RNE, non-saturating, as ml_dtypes (overflow -> NaN with the sign kept)."""
    return y.astype(E4M3).view(np.uint8)


def cvt_sat(y):
    """CUDA cvt.rn.satfinite.e4m3x2.f32: RNE; |overflow| and Inf -> +-448; NaN -> 0x7F."""
    c = cast_nonsat(y).copy()
    nan_in = np.isnan(y)
    overflow = (~nan_in) & ((c & 0x7F) == 0x7F)  # a non-NaN input became NaN: overflow or Inf
    c[overflow] = np.where(np.signbit(y[overflow]), 0xFE, 0x7E).astype(np.uint8)
    c[nan_in] = 0x7F
    return c


def cast_torch_cuda(y):
    """torch .to(float8_e4m3fn) of a CUDA arithmetic result: NaN operands are canonical +NaN."""
    c = cast_nonsat(y).copy()
    c[np.isnan(y)] = 0x7F
    return c


def cast_torch_cpu(y, factor):
    """torch .to(float8_e4m3fn) of x * factor computed by torch on an x86 CPU (recorded on the device host):
    numpy's float32 product gives x86's NaNs (Inf * 0 is the negative default NaN, a NaN operand propagates
    with its sign), except that torch's product returns the factor's NaN when both are NaN; the cast keeps
    the NaN's sign."""
    if np.isnan(factor):
        return np.full(y.shape, 0xFF if np.signbit(factor) else 0x7F, np.uint8)
    return cast_nonsat(y)


def blocks(shape, tile):
    R, C = shape
    tr, tc = tile
    for i, r0 in enumerate(range(0, R, tr)):
        for j, c0 in enumerate(range(0, C, tc)):
            yield i, j, slice(r0, min(R, r0 + tr)), slice(c0, min(C, c0 + tc))


def grid(shape, tile):
    return (-(-shape[0] // tile[0]), -(-shape[1] // tile[1]))


def amax_fmaxf(blk):
    """fold fmaxf(acc, |x|) from 0: NaN ignored."""
    a = np.abs(blk)
    a = a[~np.isnan(a)]
    return F32(a.max()) if a.size else F32(0.0)


def te_quant(x, tile, pow2, eps):
    codes = np.zeros(x.shape, np.uint8)
    sinv = np.zeros(grid(x.shape, tile), np.float32)
    eps = F32(eps)
    with np.errstate(all="ignore"):
        for i, j, rs, cs in blocks(x.shape, tile):
            blk = x[rs, cs]
            amax = amax_fmaxf(blk)
            if amax < eps:
                amax = eps
            if amax == 0 or np.isinf(amax) or np.isnan(amax):
                scale = F32(1.0)
            else:
                scale = F32(FMAX / amax)
                if np.isinf(scale):
                    scale = FLT_MAX
                if pow2:
                    scale = from_bits(bits(scale) & np.uint32(0xFF800000))[()]
            sinv[i, j] = F32(1.0) / scale
            codes[rs, cs] = cvt_sat((blk * scale).astype(np.float32))
    return codes, sinv


def deepgemm_quant(x, tile, ue8m0, gpu=True):
    """per_token_cast_to_fp8 (1x128) / per_block_cast_to_fp8 (128x128); zero padding = valid elements only.
    gpu: torch on CUDA evaluates `amax / 448.0` as amax * RN32(1/448); on the CPU it divides."""
    codes = np.zeros(x.shape, np.uint8)
    sinv = np.zeros(grid(x.shape, tile), np.float32)
    with np.errstate(all="ignore"):
        for i, j, rs, cs in blocks(x.shape, tile):
            blk = x[rs, cs]
            amax = F32(np.max(np.abs(blk)))  # NaN propagates, as torch.amax
            amax = F32(np.maximum(amax, F32(1e-4)))  # torch.clamp(min=1e-4) keeps NaN
            sf = F32(amax * (F32(1.0) / F32(448.0))) if gpu else F32(amax / F32(448.0))
            if ue8m0:
                b = int(bits(sf))
                e = ((b >> 23) & 0xFF) + (1 if (b & 0x7FFFFF) != 0 else 0)
                e = min(max(e, 1), 254)
                sf = from_bits(np.uint32(e << 23))[()]
            inv = F32(F32(1.0) / sf)
            sinv[i, j] = sf
            y = (blk * inv).astype(np.float32)
            codes[rs, cs] = cast_torch_cuda(y) if gpu else cast_torch_cpu(y, inv)
    return codes, sinv


def paper_swiglu_quant(x, tile):
    codes = np.zeros(x.shape, np.uint8)
    sinv = np.zeros(grid(x.shape, tile), np.float32)
    with np.errstate(all="ignore"):
        for i, j, rs, cs in blocks(x.shape, tile):
            blk = x[rs, cs]
            amax = max(amax_fmaxf(blk), F32(1e-10))
            t = F32(F32(amax) / F32(448.0))
            b = int(bits(t))
            e = ((b >> 23) & 0xFF) + (1 if (b & 0x7FFFFF) else 0)
            si = from_bits(np.uint32(e << 23))[()]
            sinv[i, j] = si
            codes[rs, cs] = cvt_sat((blk / si).astype(np.float32))
    return codes, sinv


def mx_quant(x, tile, ceil):
    codes = np.zeros(x.shape, np.uint8)
    sinv = np.zeros(grid(x.shape, tile), np.float32)
    with np.errstate(all="ignore"):
        for i, j, rs, cs in blocks(x.shape, tile):
            blk = x[rs, cs]
            if ceil:
                amax = amax_fmaxf(blk)
                v = F32(amax * F32(F32(1.0) / FMAX))
                # RP to E8M0: smallest 2^e >= v, e in [-127, 127]
                if v == 0:
                    e = -127
                elif np.isinf(v):
                    e = 127  # __nv_cvt_float_to_e8m0 satfinite: Inf -> 0xFE
                else:
                    m, ex = np.frexp(np.float64(v))  # v = m 2^ex, m in [0.5, 1)
                    e = int(ex - 1) + (0 if m == 0.5 else 1)
                    e = min(max(e, -127), 127)
                sinv[i, j] = np.ldexp(F32(1.0), e)
                codes[rs, cs] = cvt_sat((blk * np.ldexp(F32(1.0), -e)).astype(np.float32))
            else:
                amax = np.max(np.abs(blk))  # NaN propagates
                if not np.isfinite(amax):
                    sinv[i, j] = np.nan
                    codes[rs, cs] = 0x7F
                    continue
                shared = -127 if amax == 0 else max(int(np.floor(np.log2(np.float64(amax)))) - 8, -127)
                sinv[i, j] = np.ldexp(F32(1.0), shared)
                codes[rs, cs] = cvt_sat((blk.astype(np.float64) / np.ldexp(1.0, shared)).astype(np.float32))
    return codes, sinv


# ---- Inputs -----------------------------------------------------------------------------------------
def inputs(seed=5):
    rng = np.random.default_rng(seed)
    cases = {}
    R, C = 257, 300  # tail tiles on both axes for 1x128 and 128x128
    cases["normal"] = rng.standard_normal((R, C)).astype(np.float32)
    cases["lognormal"] = (rng.choice([-1, 1], (R, C)) * np.exp(3 * rng.standard_normal((R, C)))).astype(np.float32)
    z = rng.standard_normal((R, C)).astype(np.float32)
    z[:, :128] = 0  # all-zero blocks
    z[200:, :] = 0
    z[5, 130] = -0.0
    cases["zeros"] = z
    cases["all_zero"] = np.zeros((130, 140), np.float32)
    n = rng.standard_normal((R, C)).astype(np.float32)
    n[3, 7] = np.nan
    n[140, 200] = -np.nan
    n[10, 150] = np.inf
    n[150, 20] = -np.inf
    n[20, 260:270] = np.nan  # NaN-only tail block region
    cases["nan_inf"] = n
    s = (rng.standard_normal((R, C)) * 1e-39).astype(np.float32)  # fp32 subnormals: TE scale -> Inf -> clamp
    s[100:, :] *= 1e3
    s[0, 0] = np.float32(1e-45)
    cases["subnormal"] = s
    h = rng.standard_normal((R, C)).astype(np.float32)
    for r0 in range(0, R, 37):
        for c0 in range(0, C, 128):
            h[r0, c0 + (r0 % 100) % (min(C, c0 + 128) - c0)] = np.float32(3.0e38) * (1 if r0 % 2 else -1)
    cases["huge_per_block"] = h
    # amax exactly 448 * 2^k and one ulp either side, one block row each
    b = (rng.uniform(-1, 1, (R, C)) * 0.5).astype(np.float32)
    for r in range(R):
        k = (r % 61) - 30
        target = np.float32(np.ldexp(448.0, k))
        which = (r // 61) % 3
        v = target if which == 0 else np.nextafter(target, np.float32(np.inf)) if which == 1 else np.nextafter(
            target, np.float32(0))
        b[r, :] *= np.float32(np.ldexp(1.0, k))
        for c0 in range(0, C, 32):
            b[r, c0] = v * (1 if c0 % 64 else -1)
    cases["pow2_boundary"] = b
    # amax at 2^k boundaries of the other rules (DeepGEMM: 448 * 2^k and 1e-4; MX: 2^k * 256, 2^k * 480)
    d = (rng.uniform(-1, 1, (R, C)) * 0.25).astype(np.float32)
    for r in range(R):
        k = (r % 41) - 20
        base = [448.0, 256.0, 480.0, 1e-4 * 448 / 448][r % 4]
        t = np.float32(np.ldexp(base, k)) if r % 4 != 3 else np.float32(1e-4)
        t = [t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(0))][(r // 4) % 3]
        d[r, :] *= np.float32(np.ldexp(1.0, k)) if r % 4 != 3 else np.float32(1e-5)
        d[r, ::32] = t
    cases["rule_boundaries"] = d
    u = rng.standard_normal((R, C)).astype(np.float32)
    u *= np.exp2(-rng.integers(0, 24, (R, 1))).astype(np.float32)  # underflow edge of E4M3 within rows
    u[:, 1::7] *= np.float32(2.0**-14)
    cases["underflow_edge"] = u
    return cases


RULES = [
    # (rule, tiles, eps, oracle)
    ("te_fp32", [(1, 128), (128, 128)], None, lambda x, t: te_quant(x, t, False, 0.0)),
    ("te_pow2", [(1, 128), (128, 128)], None, lambda x, t: te_quant(x, t, True, 0.0)),
    ("te_pow2", [(1, 128), (128, 128)], 1e-10, lambda x, t: te_quant(x, t, True, 1e-10)),
    ("te_fp32", [(1, 128)], 1e-10, lambda x, t: te_quant(x, t, False, 1e-10)),
    ("te_pow2", [(1, 128)], 1e-30, lambda x, t: te_quant(x, t, True, 1e-30)),
    ("deepgemm", [(1, 128), (128, 128)], None, lambda x, t: deepgemm_quant(x, t, False)),
    ("deepgemm_ue8m0", [(1, 128), (128, 128)], None, lambda x, t: deepgemm_quant(x, t, True)),
    ("deepgemm_cpu", [(1, 128), (128, 128)], None, lambda x, t: deepgemm_quant(x, t, False, gpu=False)),
    ("deepgemm_ue8m0_cpu", [(1, 128)], None, lambda x, t: deepgemm_quant(x, t, True, gpu=False)),
    ("paper_swiglu", [(1, 128)], None, paper_swiglu_quant),
    ("mx_floor", [(1, 32)], None, lambda x, t: mx_quant(x, t, False)),
    ("mx_ceil", [(1, 32)], None, lambda x, t: mx_quant(x, t, True)),
]


def same_scales(a, b):
    return np.array_equal(bits(a), bits(b)) or (
        a.shape == b.shape and bool(np.all((bits(a) == bits(b)) | (np.isnan(a) & np.isnan(b)))))


def run_case(binary, work, name, x, rule, tile, eps, oracle):
    inp = os.path.join(work, f"{name}.npy")
    if not os.path.exists(inp):
        np.save(inp, x)
    prefix = os.path.join(work, f"{name}_{rule}_{tile[0]}x{tile[1]}_{eps}")
    cmd = [binary, "-q", "quantize", inp, prefix, "--format", "e4m3", "--granularity", f"{tile[0]}x{tile[1]}",
           "--scale", rule]
    if eps is not None:
        cmd += ["--eps", repr(eps)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return [f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}"]
    got_codes = np.load(prefix + ".codes.npy")
    got_s = np.load(prefix + ".scale_inv.npy")
    want_codes, want_s = oracle(x, tile)
    errs = []
    label = f"{name} quant_{tile[0]}x{tile[1]}_e4m3_{rule} eps={eps}"
    if got_s.shape != want_s.shape or not same_scales(got_s, want_s):
        if got_s.shape != want_s.shape:
            errs.append(f"{label}: scale shape {got_s.shape} != {want_s.shape}")
        else:
            i = np.argwhere(~((bits(got_s) == bits(want_s)) | (np.isnan(got_s) & np.isnan(want_s))))[0]
            errs.append(f"{label}: scale_inv[{i[0]},{i[1]}] fp8flow {got_s[tuple(i)]!r} (0x{int(bits(got_s[tuple(i)])):08x})"
                        f" oracle {want_s[tuple(i)]!r} (0x{int(bits(want_s[tuple(i)])):08x}); "
                        f"{int(np.sum(bits(got_s) != bits(want_s)))} differ")
    if got_codes.shape != want_codes.shape:
        errs.append(f"{label}: codes shape {got_codes.shape} != {want_codes.shape}")
    elif not np.array_equal(got_codes, want_codes):
        i = tuple(np.argwhere(got_codes != want_codes)[0])
        errs.append(f"{label}: codes[{i[0]},{i[1]}] input {x[i]!r} (0x{int(bits(x[i])):08x}): fp8flow 0x{got_codes[i]:02x} "
                    f"oracle 0x{want_codes[i]:02x} (tile {i[0] // tile[0]},{i[1] // tile[1]}); "
                    f"{int(np.sum(got_codes != want_codes))} differ")
    return errs


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures, runs = [], 0
    for name, x in inputs().items():
        for rule, tiles, eps, oracle in RULES:
            for tile in tiles:
                runs += 1
                failures += run_case(binary, work, name, x, rule, tile, eps, oracle)
    # ue8m0 scale storage is lossless for power-of-two rules
    x = inputs()["normal"]
    prefix = os.path.join(work, "ue8m0_storage")
    subprocess.run([binary, "-q", "quantize", os.path.join(work, "normal.npy"), prefix, "--scale", "deepgemm_ue8m0",
                    "--scale-format", "ue8m0"], check=True, capture_output=True)
    codes, sf = deepgemm_quant(x, (1, 128), True)
    got = np.load(prefix + ".scale_inv.npy")
    runs += 1
    if got.dtype != np.uint8 or not np.array_equal(got.astype(np.int32) - 127, np.log2(sf).astype(np.int32)) or \
            not np.array_equal(np.load(prefix + ".codes.npy"), codes):
        failures.append("ue8m0 scale storage of deepgemm_ue8m0 differs from the oracle")
    meta = json.load(open(prefix + ".meta.json"))
    if meta["recipe"] != "quant_1x128_e4m3_deepgemm_ue8m0":
        failures.append(f"meta recipe {meta['recipe']}")
    for f in failures:
        print("MISMATCH", f)
    print(f"te_deepgemm_oracle: {runs} runs, {len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
