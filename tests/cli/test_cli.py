#!/usr/bin/env python3
"""End-to-end tests of the fp8flow CLI: numpy writes the inputs, ml_dtypes is the independent oracle.

Usage: test_cli.py FP8FLOW_BINARY [GROUP ...]   (groups: see GROUPS below; default: all)

ml_dtypes is an oracle for RNE casts from float32 (nonsat = ml_dtypes' own overflow behaviour; satfinite
= ml_dtypes after clipping to +-max). It is NOT one for float64 inputs: it rounds float64 through float32
(double rounding), which fp8flow does not do; that case is checked on a hand-derived value instead.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import ml_dtypes as md
import numpy as np

BIN = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="fp8flow-cli-")
RNG = np.random.default_rng(1234)
warnings.filterwarnings("ignore", category=RuntimeWarning)  # numpy: "overflow in cast" is the point here

ORACLE = {  # our name -> (ml_dtypes type, max finite)
    "e4m3": (md.float8_e4m3fn, 448.0),
    "e5m2": (md.float8_e5m2, 57344.0),
    "e4m3fnuz": (md.float8_e4m3fnuz, 240.0),
    "e5m2fnuz": (md.float8_e5m2fnuz, 57344.0),
    "e2m1": (md.float4_e2m1fn, 6.0),
    "e2m3": (md.float6_e2m3fn, 7.5),
    "e3m2": (md.float6_e3m2fn, 28.0),
}
HAS_NAN = {"e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz"}


def run(*args, check_rc=0):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f"fp8flow {' '.join(map(str, args))}: exit {p.returncode}, expected {check_rc}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def path(name):
    return os.path.join(TMP, name)


def save(name, arr):
    np.save(path(name), arr, allow_pickle=False)
    return path(name)


def first_mismatch(x, ours, want, what):
    bad = np.flatnonzero(ours.ravel() != want.ravel())
    if bad.size:
        i = bad[0]
        xi = x.ravel()[i]
        bits = xi.view(np.uint64 if xi.dtype.itemsize == 8 else np.uint32 if xi.dtype.itemsize == 4 else np.uint16)
        raise AssertionError(f"{what}: {bad.size} mismatches; first at {i}: input {xi!r} (0x{int(bits):X}): "
                             f"fp8flow 0x{int(ours.ravel()[i]):02X}, oracle 0x{int(want.ravel()[i]):02X}")


def oracle_codes(x32, fmt, overflow):
    """ml_dtypes' RNE codes for float32 input x32; NaN outputs canonicalised to fp8flow's NaN code."""
    t, mx = ORACLE[fmt]
    y = np.clip(x32, -mx, mx) if overflow == "satfinite" else x32
    q = y.astype(t)
    codes = q.view(np.uint8).copy()
    if fmt in HAS_NAN:
        # A NaN input gives the canonical NaN code, sign dropped (CUDA's float API; ml_dtypes keeps it).
        # Overflow to NaN under nonsat keeps the sign of the input in both (-500 -> 0xFF in e4m3).
        codes[np.isnan(x32)] = 0x80 if fmt.endswith("fnuz") else 0x7F
    return codes


def test_inputs():
    """float32 samples covering every binade of every format, ties, specials."""
    n = 20000
    x = (RNG.standard_normal(n) * np.exp2(RNG.integers(-20, 20, n))).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 448, 464, 465, 480, -500, 57344, 61440, 1e-30,
                         2.0**-10, 2.0**-9 * 1.5, 4.25, 4.75, 6.0, 7.0, 7.5, 28, 30, 2.0**-17], np.float32)
    return np.concatenate([x, specials]).reshape(4, -1) if (n + specials.size) % 4 == 0 else np.concatenate([x, specials])


# ---- groups ----------------------------------------------------------------------------------------------

def convert_float32_vs_ml_dtypes():
    x = test_inputs()
    inp = save("x32.npy", x)
    for fmt in ORACLE:
        for overflow in ("satfinite", "nonsat"):
            out = path(f"o_{fmt}_{overflow}.npy")
            run("--quiet", "convert", inp, out, "--to", fmt, "--overflow", overflow)
            got = np.load(out)
            assert got.dtype == np.uint8 and got.shape == x.shape, (got.dtype, got.shape)
            xs = x if fmt in HAS_NAN else np.where(np.isnan(x), 0, x)  # no-NaN formats: NaN handling differs
            if fmt not in HAS_NAN:
                run("--quiet", "convert", save("xs.npy", xs), out, "--to", fmt, "--overflow", overflow)
                got = np.load(out)
            first_mismatch(xs, got, oracle_codes(xs, fmt, overflow), f"float32 -> {fmt} rne {overflow}")


def convert_float16_and_bf16_vs_ml_dtypes():
    h = np.arange(1 << 16, dtype=np.uint16)
    f16 = h.view(np.float16)
    inp = save("f16.npy", f16.reshape(256, 256))
    for fmt in ("e4m3", "e5m2"):
        out = path("o.npy")
        run("--quiet", "convert", inp, out, "--to", fmt)
        first_mismatch(f16, np.load(out).ravel(), oracle_codes(f16.astype(np.float32), fmt, "satfinite"),
                       f"float16 -> {fmt}")
    # bf16 codes stored as uint16 (numpy has no bf16), decoded with --from bf16.
    b = save("bf16.npy", h)
    xb = h.view(md.bfloat16).astype(np.float32)
    for fmt in ("e4m3", "e5m2"):
        out = path("o.npy")
        run("--quiet", "convert", b, out, "--from", "bf16", "--to", fmt, "--overflow", "nonsat")
        first_mismatch(xb, np.load(out), oracle_codes(xb, fmt, "nonsat"), f"bf16 -> {fmt}")
    # float32 -> bf16 / f16 codes as uint16.
    x = test_inputs().ravel()
    out = path("o16.npy")
    run("--quiet", "convert", save("x.npy", x), out, "--to", "bf16", "--overflow", "nonsat")
    got = np.load(out)
    assert got.dtype == np.uint16
    want = x.astype(md.bfloat16).view(np.uint16).copy()
    want[np.isnan(x)] = 0x7FFF
    first_mismatch(x, got, want, "float32 -> bf16")
    run("--quiet", "convert", save("x.npy", x), out, "--to", "f16", "--overflow", "nonsat")
    want = x.astype(np.float16).view(np.uint16).copy()
    want[np.isnan(x)] = 0x7FFF
    first_mismatch(x, np.load(out), want, "float32 -> f16")


def convert_float64_rounds_once():
    # Values exact in float32: ml_dtypes is an oracle there.
    x = test_inputs().ravel()
    out = path("o.npy")
    run("--quiet", "convert", save("x64.npy", x.astype(np.float64)), out, "--to", "e4m3")
    first_mismatch(x, np.load(out), oracle_codes(x, "e4m3", "satfinite"), "float64 (float32-exact) -> e4m3")
    # 1 + 2^-4 + 2^-30 lies just above the midpoint of e4m3's 1.0 (0x38) and 1.125 (0x39): correctly
    # rounded it is 0x39. Through float32 the 2^-30 is lost, the tie goes to even, 0x38 (ml_dtypes does that).
    y = np.array([1 + 2**-4 + 2**-30, -(1 + 2**-4 + 2**-30), 1 + 2**-4], np.float64)
    run("--quiet", "convert", save("y64.npy", y), out, "--to", "e4m3")
    assert list(np.load(out)) == [0x39, 0xB9, 0x38], np.load(out)
    # --to f32 from float64 rounds once too; --to f64 from float64 is the identity.
    run("--quiet", "convert", save("y64.npy", y), out, "--to", "f32")
    got = np.load(out)
    assert got.dtype == np.float32 and np.array_equal(got, y.astype(np.float32))
    run("--quiet", "convert", save("y64.npy", y), out, "--to", "f64")
    assert np.load(out).dtype == np.float64 and np.array_equal(np.load(out), y)


def convert_ue8m0_rules():
    x = np.abs(test_inputs().ravel())
    x = x[np.isfinite(x) & (x > 0)]
    inp = save("pos.npy", x)
    out = path("o.npy")
    run("--quiet", "convert", inp, out, "--to", "ue8m0", "--round", "rn")
    first_mismatch(x, np.load(out), x.astype(md.float8_e8m0fnu).view(np.uint8), "float32 -> ue8m0 rn (ml_dtypes)")
    # DeepGEMM ceil_to_ue8m0 on fp32 bits, re-derived with numpy.
    b = x.view(np.uint32)
    want = np.clip((b >> 23).astype(np.int64) + ((b & 0x7FFFFF) != 0), 1, 254).astype(np.uint8)
    run("--quiet", "convert", inp, out, "--to", "ue8m0", "--round", "ceil")
    first_mismatch(x, np.load(out), want, "float32 -> ue8m0 ceil")
    # rz: floor(log2 x) for normal floats = the exponent field.
    xn = x[x >= np.float32(2.0**-126)]
    run("--quiet", "convert", save("n.npy", xn), out, "--to", "ue8m0", "--round", "rz")
    first_mismatch(xn, np.load(out), (xn.view(np.uint32) >> 23).astype(np.uint8), "float32 -> ue8m0 rz")
    p = run("convert", save("n64.npy", xn.astype(np.float64)), out, "--to", "ue8m0", "--round", "ceil", check_rc=1)
    assert "float32" in p.stderr, p.stderr


def convert_layouts():
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    want = oracle_codes(x, "e4m3", "satfinite").reshape(x.shape)
    out = path("o.npy")
    for name, arr in (("fortran.npy", np.asfortranarray(x)), ("big.npy", x.astype(">f4"))):
        run("--quiet", "convert", save(name, arr), out, "--to", "e4m3")
        got = np.load(out)
        assert got.shape == x.shape and np.array_equal(got, want), name
    run("--quiet", "convert", save("scalar.npy", np.float32(3.0)), out, "--to", "e4m3")
    assert np.load(out).shape == () and int(np.load(out)) == 0x44


def decode_round_trip():
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    inp = save("codes.npy", codes)
    out = path("dec.npy")
    for fmt in ("e4m3", "e5m2", "e4m3fnuz"):
        run("--quiet", "convert", inp, out, "--decode", fmt)
        got = np.load(out)
        assert got.dtype == np.float32 and got.shape == codes.shape
        want = codes.view(ORACLE[fmt][0]).astype(np.float32)
        same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
        assert same.all(), f"--decode {fmt}: first mismatch at code {np.flatnonzero(~same.ravel())[0]:#x}"
        run("--quiet", "convert", inp, out, "--decode", fmt, "--to", "f64")
        assert np.load(out).dtype == np.float64
        # decode then encode gives the codes back (NaN codes: the canonical one).
        back = path("back.npy")
        run("--quiet", "convert", out, back, "--to", fmt, "--overflow", "nonsat")
        b = np.load(back)
        nan = np.isnan(want)
        assert np.array_equal(b[~nan], codes[~nan]), fmt
    run("--quiet", "convert", save("u16.npy", np.array([0x3F80, 0xC000], np.uint16)), out, "--decode", "bf16")
    assert list(np.load(out)) == [1.0, -2.0]


def convert_counts_and_stochastic():
    x = np.array([0.0, 1e-9, 500.0, -np.inf, np.nan, 0.001, 1.0], np.float32)
    inp = save("c.npy", x)
    out = path("o.npy")
    c = json.loads(run("convert", inp, out, "--to", "e4m3", "--json").stdout)["counts"]
    assert (c["elements"], c["saturated"], c["nan_outputs"], c["underflow_to_zero"], c["subnormal"]) == (7, 2, 1, 1, 1), c
    c = json.loads(run("convert", inp, out, "--to", "e5m2", "--overflow", "nonsat", "--json").stdout)["counts"]
    assert (c["saturated"], c["overflow_to_inf"], c["nan_outputs"]) == (0, 1, 1), c
    assert run("--quiet", "convert", inp, out, "--to", "e4m3").stdout == ""
    assert "saturated 2" in run("convert", inp, out, "--to", "e4m3").stdout
    # Stochastic rounding: seeded, independent of the thread count, always one of the two neighbours.
    y = RNG.standard_normal(100000).astype(np.float32)
    inp = save("s.npy", y)
    outs = []
    for threads in (1, 2):
        o = path(f"s{threads}.npy")
        run("--quiet", "--threads", threads, "convert", inp, o, "--to", "e4m3", "--round", "stochastic", "--seed", 7)
        outs.append(np.load(o))
    assert np.array_equal(outs[0], outs[1])
    run("--quiet", "convert", inp, out, "--to", "e4m3", "--round", "stochastic", "--seed", 8)
    assert not np.array_equal(np.load(out), outs[0])
    run("--quiet", "convert", inp, path("d.npy"), "--to", "e4m3", "--round", "rd")
    run("--quiet", "convert", inp, path("u.npy"), "--to", "e4m3", "--round", "ru")
    d, u = np.load(path("d.npy")), np.load(path("u.npy"))
    assert ((outs[0] == d) | (outs[0] == u)).all()


def errors_leave_output_untouched():
    good = save("good.npy", np.ones(4, np.float32))
    out = path("existing.npy")
    np.save(out, np.arange(3, dtype=np.int16))
    before = open(out, "rb").read()

    def untouched():
        assert open(out, "rb").read() == before, "OUT.npy was modified"
        leftovers = [f for f in os.listdir(TMP) if ".partial" in f]
        assert not leftovers, leftovers

    garbage = path("garbage.npy")
    open(garbage, "wb").write(b"not a numpy file at all")
    p = run("convert", garbage, out, "--to", "e4m3", check_rc=1)
    assert "garbage.npy" in p.stderr and "magic" in p.stderr, p.stderr
    untouched()
    trunc = path("trunc.npy")
    open(trunc, "wb").write(open(good, "rb").read()[:-3])
    p = run("convert", trunc, out, "--to", "e4m3", check_rc=1)
    assert "trunc.npy" in p.stderr and "truncated" in p.stderr, p.stderr
    untouched()
    p = run("convert", path("missing.npy"), out, "--to", "e4m3", check_rc=1)
    assert "missing.npy" in p.stderr
    untouched()
    p = run("convert", save("c64.npy", np.ones(2, np.complex64)), out, "--to", "e4m3", check_rc=1)
    assert "complex" in p.stderr, p.stderr
    untouched()
    p = run("convert", save("i32.npy", np.ones(2, np.int32)), out, "--to", "e4m3", check_rc=1)
    assert "int32" in p.stderr, p.stderr
    p = run("convert", save("u8.npy", np.ones(2, np.uint8)), out, "--to", "e4m3", check_rc=1)
    assert "--from" in p.stderr, p.stderr
    run("convert", save("u8.npy", np.ones(2, np.uint8)), out, "--from", "bf16", "--to", "e4m3", check_rc=1)
    untouched()
    # Usage errors: exit 2, output untouched.
    run("convert", good, out, "--to", "e4m3", "--bogus", check_rc=2)
    run("convert", good, out, "--to", "e9m9", check_rc=2)
    run("convert", good, out, "--to", "e4m3", "--round", "sideways", check_rc=2)
    run("convert", good, out, "--to", "e4m3", "--round", "ceil", check_rc=2)  # ceil is a ue8m0 rule only
    run("convert", good, out, "--to", "e4m3", "--overflow", "wrap", check_rc=2)
    run("convert", good, out, check_rc=2)  # no --to
    run("convert", good, out, "--decode", "e4m3", "--to", "e5m2", check_rc=2)
    run("convert", good, check_rc=2)
    untouched()
    # And a good run replaces it.
    run("--quiet", "convert", good, out, "--to", "e4m3")
    assert np.load(out).dtype == np.uint8


def help_everywhere():
    top = run("--help").stdout
    assert "SUBCOMMANDS" in top.upper()
    subs = []
    after = top.upper().split("SUBCOMMANDS:")[1].splitlines()[1:]
    lines = top.splitlines()[len(top.splitlines()) - len(after):]
    for line in lines:
        if line.startswith("  ") and line.strip():
            subs.append(line.split()[0])
    for s in ("formats", "inspect", "convert", "quickstart"):
        assert s in subs, (s, subs)
    for s in subs:
        p = run(s, "--help")
        assert s in p.stdout, s
    run("--version")
    run("nosuchcommand", check_rc=2)
    run(check_rc=2)


def inspect_codes_and_values():
    j = json.loads(run("inspect", "e4m3", "0x7e", "--json").stdout)
    assert (j["value"], j["class"], j["exponent_field"], j["mantissa_field"]) == ("448", "normal", 15, 6), j
    assert json.loads(run("inspect", "e4m3", "--code", "126", "--json").stdout)["code"] == "0x7E"
    assert json.loads(run("inspect", "e4m3", "0x7F", "--json").stdout)["class"] == "NaN"
    assert json.loads(run("inspect", "e5m2", "0x7C", "--json").stdout)["class"] == "Inf"
    assert json.loads(run("inspect", "e4m3", "0x01", "--json").stdout)["value"] == "0.001953125"
    assert json.loads(run("inspect", "e4m3", "0x80", "--json").stdout)["value"] == "-0"
    assert json.loads(run("inspect", "ue8m0", "0x00", "--json").stdout)["formula"] == "1 x 2^-127"
    j = json.loads(run("inspect", "e4m3", "300.5", "--json").stdout)
    modes = {r["mode"]: r for r in j["roundings"]}
    assert modes["rne satfinite"]["code"] == "0x79" and modes["ru satfinite"]["code"] == "0x7A"
    assert (j["below"], j["above"], j["ulp"]) == ("288", "320", "32"), j
    j = json.loads(run("inspect", "e4m3", "1000", "--json").stdout)
    modes = {r["mode"]: r["code"] for r in j["roundings"]}
    assert modes["rne satfinite"] == "0x7E" and modes["rne nonsat"] == "0x7F" and modes["rz nonsat"] == "0x7E"
    j = json.loads(run("inspect", "e5m2", "--json", "--", "-1e6").stdout)
    modes = {r["mode"]: r["code"] for r in j["roundings"]}
    assert modes["rne nonsat"] == "0xFC" and modes["rne satfinite"] == "0xFB" and modes["rd satfinite"] == "0xFB"
    j = json.loads(run("inspect", "ue8m0", "0.75", "--json").stdout)
    rules = {r["mode"]: r["code"] for r in j["ue8m0_rules"]}
    assert rules["rule ceil"] == "0x7F" and rules["rule floor"] == "0x7E" and rules["rule rn"] == "0x7F", rules
    assert "rne satfinite" in run("inspect", "e5m2", "-1e-7").stdout
    run("inspect", "e4m3", "0x100", check_rc=2)  # arguments that do not parse or fit: usage errors
    run("inspect", "e4m3", "banana", check_rc=2)
    run("inspect", "e9m9", "1.0", check_rc=2)
    run("inspect", "e4m3", "--code", "12x", check_rc=2)


def quickstart_runs():
    out = path("qs")
    # A small experiment of the three kinds the main job runs (the full quickstart.toml is timed apart).
    exp = os.path.join(out, "exp.toml")
    os.makedirs(out, exist_ok=True)
    with open(exp, "w") as f:
        f.write('[experiment]\nname = "qs"\n'
                '[[study]]\nkind = "transpose_study"\nparams = { shape = [128, 256] }\n'
                '[[study]]\nkind = "gemm_accum_study"\nparams = { shape = [16, 32, 256] }\n'
                '[[study]]\nkind = "moe_dataflows"\nparams = { preset = "tiny", tokens = 32 }\n'
                'sweep = { dataflow = ["fp64", "bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow"] }\n')
    h5 = os.path.join(out, "qs.h5")
    t = time.time()
    p = run("quickstart", "--out", out, "--experiment", exp, "-o", h5)
    dt = time.time() - t
    doc = json.load(open(os.path.join(out, "conversion_study.json")))
    assert len(doc["rows"]) == 16, len(doc["rows"])
    e4m3 = [r for r in doc["rows"] if r["format"] == "e4m3" and r["round"] == "rne"][0]
    assert abs(e4m3["max_rel_err_normal_range"] - 1 / 17) < 1e-3  # half an ulp over (1 + 1/16)
    # The store holds the 7 runs, and the summary read back from it names each study and dataflow.
    assert os.path.exists(h5)
    assert len(run("ls", h5).stdout.strip().splitlines()) >= 7
    for s in ("Transpose study", "GEMM accumulation study", "MoE layer, five dataflows", "fp8_flow", "fp8_blockwise",
              "fp8_double_quant", "hopper_fast", "paper_kernel", h5, "Report: " + os.path.join(out, "qs.html")):
        assert s in p.stdout, (s, p.stdout)
    # It ends with the convergence-risk report beside the store (issue 9; tests/cli/test_report.py tests it).
    assert "<h1>fp8flow convergence-risk report</h1>" in open(os.path.join(out, "qs.html"), encoding="utf-8").read()
    moe_rows = [l.split() for l in p.stdout.splitlines() if l.strip().startswith(("fp8_flow ", "fp8_blockwise "))]
    assert len(moe_rows) == 2 and all(float(r[1]) > 10 for r in moe_rows), moe_rows  # SQNR of y, finite
    # Again: the runs are kept (resume), the summary is the same.
    p2 = run("quickstart", "--out", out, "--experiment", exp, "-o", h5)
    assert "MoE layer, five dataflows" in p2.stdout
    assert dt < 120, dt


GROUPS = {f.__name__: f for f in (convert_float32_vs_ml_dtypes, convert_float16_and_bf16_vs_ml_dtypes,
                                  convert_float64_rounds_once, convert_ue8m0_rules, convert_layouts,
                                  decode_round_trip, convert_counts_and_stochastic, errors_leave_output_untouched,
                                  help_everywhere, inspect_codes_and_values, quickstart_runs)}

if __name__ == "__main__":
    from harness import run_groups

    run_groups(GROUPS)
