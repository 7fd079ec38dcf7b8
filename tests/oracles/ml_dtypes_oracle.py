#!/usr/bin/env python3
"""ml_dtypes as a second, independent oracle for fp8flow's formats.

For every format ml_dtypes has (float8_e4m3fn, float8_e5m2, float8_e4m3fnuz, float8_e5m2fnuz,
float8_e8m0fnu, float4_e2m1fn, float6_e2m3fn, float6_e3m2fn, bfloat16; float16 from numpy):
  * decode: all 2^bits codes, ours (float64) against ml_dtypes' astype(float64), bit for bit;
  * encode: all 2^16 bf16 values, ~1M float32 samples (random bit patterns, log-uniform magnitudes,
    every code value and midpoint +-1..4 ulps) and float64 samples, RNE, ours (scalar and batch API,
    Overflow::nonsat: ml_dtypes does not saturate) against astype;
  * e8m0fnu: our Ue8m0Rule::rn (ue8m0_from_float) against astype(float8_e8m0fnu), structured sweep
    over every float32 exponent x boundary mantissas, plus the samples above (--exhaustive-e8m0: all 2^32).

Our codes come from the helper executable fp8flow-dump-codes (tests/tools/dump_codes.cpp) through raw
files in a temporary directory. Exit status: 0 all match, 1 a mismatch (the first one printed in hex),
77 ml_dtypes/numpy missing (CTest SKIP_RETURN_CODE), 2 usage.

Known, deliberate differences are listed in EXCEPTIONS below, each counted and printed; they are
never skipped silently, and anything not listed there is a failure.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings
from fractions import Fraction

SKIP = 77
try:
    import numpy as np
    import ml_dtypes
except ImportError as e:  # the venv exists but lacks the packages: not our failure
    print(f"SKIP: cannot import numpy/ml_dtypes ({e}); run scripts/setup")
    sys.exit(SKIP)

warnings.simplefilter("ignore")  # numpy warns on NaN/overflow casts; those are what we test

# ours name -> (ml_dtypes type, total bits, has NaN)
FORMATS = {
    "e4m3": (ml_dtypes.float8_e4m3fn, 8, True),
    "e5m2": (ml_dtypes.float8_e5m2, 8, True),
    "e4m3fnuz": (ml_dtypes.float8_e4m3fnuz, 8, True),
    "e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, 8, True),
    "e2m1": (ml_dtypes.float4_e2m1fn, 4, False),
    "e2m3": (ml_dtypes.float6_e2m3fn, 6, False),
    "e3m2": (ml_dtypes.float6_e3m2fn, 6, False),
    "bf16": (ml_dtypes.bfloat16, 16, True),
    "f16": (np.float16, 16, True),
}

# Deliberate differences between fp8flow and ml_dtypes 0.5.4 (established by running it):
EXCEPTIONS = {
    "nan_sign": "NaN input: ml_dtypes keeps the NaN's sign (and, for e5m2/bf16/f16, payload bits); "
    "we return the canonical positive NaN code, as CUDA's float API. Compared as NaN == NaN.",
    "f64_via_f32": "float64 input: ml_dtypes 0.5.4 converts float64 to float8/bfloat16/FP6/FP4 through "
    "float32 (double rounding: 1.0625 + 2^-40 -> e4m3 1.0, 0x38); we round once (0x39, checked against "
    "MPFR in tests/test_oracle_mpfr.cpp). Accepted only where ml_dtypes(x) == ml_dtypes(float32(x)) and "
    "our value is strictly nearer x, exactly. (numpy's float64 -> float16 rounds once and must match.)",
    "nan_to_zero": "NaN input to FP4/FP6 (no NaN encoding): ml_dtypes returns a zero with the sign "
    "bit flipped (+NaN -> -0 = 0x8/0x20, -NaN -> +0); we return +max (0x7/0x1F), as CUDA.",
}


def code_dtype(bits):
    return np.uint8 if bits <= 8 else np.uint16


def ml_encode(values, mltype, bits):
    return values.astype(mltype).view(code_dtype(bits))


def ml_decode(bits, mltype):
    codes = np.arange(1 << bits, dtype=np.uint64).astype(code_dtype(bits))
    return codes.view(mltype).astype(np.float64)


def is_nan_code(codes, name):
    mltype, bits, has_nan = FORMATS[name]
    if not has_nan:
        return np.zeros(codes.shape, bool)
    return np.isnan(codes.view(mltype).astype(np.float32))


class Oracle:
    def __init__(self, tool, workdir):
        self.tool = tool
        self.dir = workdir
        self.failures = []
        self.counts = {k: 0 for k in EXCEPTIONS}
        self.checked = 0
        self.seq = 0

    def path(self, stem):
        self.seq += 1
        return os.path.join(self.dir, f"{self.seq}_{stem}")

    def run_tool(self, *args):
        r = subprocess.run([self.tool, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"FAIL: {self.tool} {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")

    def our_encode(self, name, values, api, rounding="rne", overflow="nonsat"):
        kind = "f32" if values.dtype == np.float32 else "f64"
        src, dst = self.path("in.bin"), self.path("out.bin")
        values.tofile(src)
        self.run_tool("encode", name, rounding, overflow, api, kind, src, dst)
        return np.fromfile(dst, dtype=code_dtype(FORMATS[name][1]))

    def our_decode(self, name):
        dst = self.path("decode.f64")
        self.run_tool("decode", name, dst)
        return np.fromfile(dst, dtype=np.float64)

    def our_ue8m0(self, rule, overflow, api, values):
        src, dst = self.path("in.f32"), self.path("out.u8")
        values.astype(np.float32).tofile(src)
        self.run_tool("ue8m0", rule, overflow, api, src, dst)
        return np.fromfile(dst, dtype=np.uint8)

    def fail(self, what, first_index, detail):
        self.failures.append(f"{what}: {detail}")
        print(f"FAIL {what}: {detail}")

    # ---- checks ------------------------------------------------------------------------------------
    def check_decode(self, name):
        mltype, bits, _ = FORMATS[name]
        ours, ml = self.our_decode(name), ml_decode(bits, mltype)
        same = (ours.view(np.uint64) == ml.view(np.uint64)) | (np.isnan(ours) & np.isnan(ml))
        nan_sign = np.isnan(ours) & np.isnan(ml) & (np.signbit(ours) != np.signbit(ml))
        self.checked += len(ours)
        bad = np.nonzero(~same)[0]
        if len(bad):
            i = bad[0]
            self.fail(f"{name} decode", i, f"{len(bad)} codes differ; first code 0x{i:X}: ours {ours[i]!r} "
                      f"(0x{ours.view(np.uint64)[i]:016X}), ml_dtypes {ml[i]!r} (0x{ml.view(np.uint64)[i]:016X})")
        if nan_sign.any():
            self.fail(f"{name} decode", 0, f"NaN codes decode with a different sign: {np.nonzero(nan_sign)[0]}")
        if not len(bad):
            print(f"  decode {name:9s} {len(ours):6d} codes ok")

    def check_encode(self, name, values, label):
        mltype, bits, has_nan = FORMATS[name]
        want = ml_encode(values, mltype, bits)
        nan_in = np.isnan(values)
        for api in ("scalar", "batch"):
            got = self.our_encode(name, values, api)
            self.checked += len(values)
            ok = got == want
            # Listed exceptions, each counted.
            both_nan = ~ok & is_nan_code(got, name) & is_nan_code(want, name) & nan_in
            ok |= both_nan
            self.counts["nan_sign"] += int(both_nan.sum())
            if not has_nan:
                mag_mask = (1 << (bits - 1)) - 1
                zero_flip = ~ok & nan_in & (got == mag_mask) & ((want & mag_mask) == 0) & (
                    (want >> (bits - 1)) == (~np.signbit(values)).astype(want.dtype))
                ok |= zero_flip
                self.counts["nan_to_zero"] += int(zero_flip.sum())
            if values.dtype == np.float64 and mltype is not np.float16:
                via32 = ml_encode(values.astype(np.float32), mltype, bits)
                table = ml_decode(bits, mltype)
                for i in np.nonzero(~ok & (via32 == want) & np.isfinite(values))[0]:
                    x, vo, vm = Fraction(float(values[i])), table[got[i]], table[want[i]]
                    if np.isfinite(vo) and np.isfinite(vm) and abs(Fraction(float(vo)) - x) < abs(Fraction(float(vm)) - x):
                        ok[i] = True
                        self.counts["f64_via_f32"] += 1
            bad = np.nonzero(~ok)[0]
            if len(bad):
                i = bad[0]
                v = values[i]
                vbits = v.view(np.uint32 if values.dtype == np.float32 else np.uint64)
                w = 8 if values.dtype == np.float32 else 16
                cw = (bits + 3) // 4
                self.fail(f"{name} rne nonsat {api} ({label})", i,
                          f"{len(bad)} of {len(values)} differ; first input 0x{int(vbits):0{w}X} ({float(v)!r}): "
                          f"ours 0x{int(got[i]):0{cw}X}, ml_dtypes 0x{int(want[i]):0{cw}X}")
        print(f"  encode {name:9s} {label:26s} {len(values):8d} values x 2 APIs")

    def check_e8m0(self, values, label):
        want = values.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
        for overflow in ("satfinite", "nonsat"):
            for api in ("scalar", "batch"):
                got = self.our_ue8m0("rn", overflow, api, values)
                self.checked += len(values)
                bad = np.nonzero(got != want)[0]
                if len(bad):
                    i = bad[0]
                    self.fail(f"ue8m0 rn {overflow} {api} ({label})", i,
                              f"{len(bad)} of {len(values)} differ; first input 0x{int(values.view(np.uint32)[i]):08X}"
                              f" ({float(values[i])!r}): ours 0x{int(got[i]):02X}, ml_dtypes 0x{int(want[i]):02X}")
        print(f"  ue8m0 rn  {label:26s} {len(values):8d} values x 2 policies x 2 APIs")


# ---- inputs --------------------------------------------------------------------------------------
def all_bf16_as_f32():
    return (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)


def random_f32(rng, n):
    """Random bit patterns (every exponent, NaN, Inf, subnormals) and log-uniform magnitudes 2^-40..2^20."""
    patterns = rng.integers(0, 1 << 32, n // 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    mags = np.exp2(rng.uniform(-40, 20, n - n // 2)).astype(np.float32)
    signs = np.where(rng.integers(0, 2, len(mags)) == 1, -1, 1).astype(np.float32)
    return np.concatenate([patterns, mags * signs])


def neighbours_f32(x, k):
    """x and its float32 neighbours up to k ulps either side, both signs."""
    x = np.asarray(x, dtype=np.float32)
    out = [x]
    lo, hi = x.copy(), x.copy()
    for _ in range(k):
        lo = np.nextafter(lo, np.float32(-np.inf))
        hi = np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    out = np.concatenate(out)
    return np.concatenate([out, -out])


def boundary_f32(name):
    """Every finite value of the format, every midpoint (tie), the first value past max, +-ulps."""
    mltype, bits, _ = FORMATS[name]
    v = ml_decode(bits, mltype)
    v = np.unique(v[np.isfinite(v) & (v >= 0)])
    top = v[-1] + (v[-1] - v[-2])  # the next value above max if the exponent were unbounded (e2m1: 8)
    v = np.append(v, [top, 2 * top])
    mids = (v[:-1] + v[1:]) / 2
    pts = np.concatenate([v, mids]).astype(np.float32)
    return neighbours_f32(pts, 4 if bits <= 8 else 1)


def double_samples(rng, name):
    """float64 inputs a hair off each tie (2^-40 relative) and the double-rounding case 1.0625 + 2^-40."""
    mltype, bits, _ = FORMATS[name]
    v = ml_decode(bits, mltype)
    v = np.unique(v[np.isfinite(v) & (v >= 0)])
    mids = (v[:-1] + v[1:]) / 2
    eps = mids * np.ldexp(1.0, -40)
    x = np.concatenate([mids - eps, mids + eps, [1.0625 + np.ldexp(1.0, -40)]])
    x = np.concatenate([x, -x, rng.standard_normal(4096) * float(v[-1]) / 4])
    return x.astype(np.float64)


def e8m0_sweep():
    """Every float32 exponent field x mantissas at the ties (0x400000), the ends and random ones, both signs."""
    rng = np.random.default_rng(8)
    mants = np.concatenate([[0, 1, 2, 0x1FFFFF, 0x200000, 0x3FFFFE, 0x3FFFFF, 0x400000, 0x400001, 0x400002,
                             0x5FFFFF, 0x600000, 0x600001, 0x7FFFFE, 0x7FFFFF], rng.integers(0, 1 << 23, 16)])
    exps = np.arange(256, dtype=np.uint32)
    b = (exps[:, None] << 23 | mants[None, :].astype(np.uint32)).ravel()
    b = np.concatenate([b, b | 0x80000000])
    return b.astype(np.uint32).view(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path of the fp8flow-dump-codes executable")
    ap.add_argument("--samples", type=int, default=1 << 20, help="random float32 samples (default 2^20)")
    ap.add_argument("--exhaustive-e8m0", action="store_true", help="all 2^32 float32 inputs for e8m0fnu")
    args = ap.parse_args()
    if not os.access(args.tool, os.X_OK):
        print(f"usage error: --tool {args.tool} is not an executable", file=sys.stderr)
        return 2
    print(f"ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__}")
    rng = np.random.default_rng(20240611)
    with tempfile.TemporaryDirectory(prefix="fp8flow-ml-dtypes-") as d:
        o = Oracle(args.tool, d)
        bf16 = all_bf16_as_f32()
        samples = random_f32(rng, args.samples)
        for name in FORMATS:
            o.check_decode(name)
            o.check_encode(name, bf16, "all 2^16 bf16")
            o.check_encode(name, samples, "random float32")
            o.check_encode(name, boundary_f32(name), "values, ties +-ulps")
            o.check_encode(name, double_samples(rng, name), "float64 near ties")
        # e8m0fnu: decode, and our Ue8m0Rule::rn
        ml = ml_decode(8, ml_dtypes.float8_e8m0fnu)
        dst = o.path("ue8m0.f64")
        o.run_tool("decode", "ue8m0", dst)
        ours = np.fromfile(dst, dtype=np.float64)
        same = (ours.view(np.uint64) == ml.view(np.uint64)) | (np.isnan(ours) & np.isnan(ml))
        if not same.all():
            i = np.nonzero(~same)[0][0]
            o.fail("ue8m0 decode", i, f"first code 0x{i:02X}: ours {ours[i]!r}, ml_dtypes {ml[i]!r}")
        else:
            print("  decode ue8m0       256 codes ok")
        o.check_e8m0(e8m0_sweep(), "exponents x mantissas")
        o.check_e8m0(bf16, "all 2^16 bf16")
        o.check_e8m0(samples, "random float32")
        if args.exhaustive_e8m0:
            step = 1 << 26
            for start in range(0, 1 << 32, step):
                o.check_e8m0(np.arange(start, start + step, dtype=np.uint64).astype(np.uint32).view(np.float32),
                             f"all float32 [{start >> 26}/64]")
        print(f"{o.checked} comparisons; listed exceptions:")
        for k, n in o.counts.items():
            print(f"  {k}: {n}  ({EXCEPTIONS[k]})")
        if o.failures:
            print(f"FAILED: {len(o.failures)} checks; first: {o.failures[0]}")
            return 1
        print("ml_dtypes oracle: all match")
        return 0


if __name__ == "__main__":
    sys.exit(main())
