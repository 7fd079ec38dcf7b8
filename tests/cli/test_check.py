#!/usr/bin/env python3
"""`fp8flow check` end to end: a user's kernels, written here in numpy independently of fp8flow (TE's 1x128
power-of-two quantizer with an ml_dtypes cast; the FP8-Flow-MoE fork's Triton scaling-aware transpose,
re-derived from its code, returning one list of column copies per expert group), checked bit for bit; then
planted single-element faults that the report must find and locate exactly; layouts; exit codes; the
kernel_check run in a results store read back with h5py, and `ls`/`show`/`report` on it.

Usage: test_check.py FP8FLOW_BINARY [GROUP ...]
"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import ml_dtypes as md
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from harness import run_groups  # noqa: E402
from user_kernels import fork_sat, te_pow2_1x128  # noqa: E402  (numpy kernels, independent of fp8flow)

BIN = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="fp8flow-check-")
RNG = np.random.default_rng(22)


def run(*args, rc=0):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=300)
    if rc is not None and p.returncode != rc:
        raise AssertionError(f"fp8flow {' '.join(map(str, args))}: exit {p.returncode}, expected {rc}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def save(name, arr):
    p = os.path.join(TMP, name)
    np.save(p, arr, allow_pickle=False)
    return p


def activations(r, c):
    # bf16-like activations with a wide range, so that the SAT's shifts reach below the normal range.
    x = RNG.standard_normal((r, c)).astype(np.float32) * np.exp2(RNG.uniform(-10, 6, (r, 1))).astype(np.float32)
    x[RNG.random((r, c)) < 0.02] *= np.float32(2.0 ** -12)
    return x.astype(md.bfloat16).astype(np.float32)


# ---- groups ----------------------------------------------------------------------------------------------
def check_quantize_exact_and_faults():
    x = activations(200, 384)
    codes, si = te_pow2_1x128(x)
    xf, cf, sf = save("x.npy", x), save("codes.npy", codes), save("si.npy", si)
    p = run("check", "quantize", xf, "--codes", cf, "--scales", sf, "--granularity", "1x128", "--scale", "te_pow2")
    assert "BIT-EXACT" in p.stdout, p.stdout
    # --recipe spells the same
    run("check", "quantize", xf, "--codes", cf, "--scales", sf, "--recipe", "quant_1x128_e4m3_te_pow2")
    # Planted single-element faults: found and located exactly.
    for (r, c) in [(0, 0), (137, 300), (199, 383), (64, 128)]:
        bad = codes.copy()
        bad[r, c] ^= 0x01  # one ulp (mantissa lsb)
        bf = save("bad.npy", bad)
        p = run("check", "quantize", xf, "--codes", bf, "--scales", sf, "--json", rc=1)
        j = json.loads(p.stdout)
        assert j["bitexact"] is False and j["elements_mismatched"] == 1 and j["scales_mismatched"] == 0, j
        m = j["mismatches"][0]
        assert (m["row"], m["col"], m["row_tile"], m["col_tile"]) == (r, c, r, c // 128), m
        assert m["got_code"] == bad[r, c] and m["want_code"] == codes[r, c], m
        assert abs(m["ulp"]) == 1 and m["cause"] in ("rounding_ulp", "rounding_tie", "underflow"), m
        assert m["input"] == float(x[r, c]), m
    # A planted scale fault: the tile is named, the codes that follow it are 'tile_scale'.
    bad_si = si.copy()
    bad_si[17, 2] *= np.float32(0.5)
    p = run("check", "quantize", xf, "--codes", cf, "--scales", save("bad_si.npy", bad_si), "--json", rc=1)
    j = json.loads(p.stdout)
    assert j["scales_mismatched"] == 1 and j["elements_mismatched"] == 0, j
    s = j["scale_mismatches"][0]
    assert (s["row_tile"], s["col_tile"], s["rows"], s["cols"]) == (17, 2, [17, 18], [256, 384]), s
    assert s["log2_ratio"] == -1.0, s
    # The text report names the element, the cause and says MISMATCH.
    bad = codes.copy()
    bad[5, 7] = 0x7F  # NaN where a finite value belongs
    p = run("check", "quantize", xf, "--codes", save("nan.npy", bad), "--scales", sf, rc=1)
    assert "MISMATCH" in p.stdout and "nan_inf" in p.stdout and "0x7f" in p.stdout, p.stdout
    # bf16 input codes (--from bf16) give the same verdict as their float32 widening
    xb = save("xb.npy", x.astype(md.bfloat16).view(np.uint16))
    run("check", "quantize", xb, "--from", "bf16", "--codes", cf, "--scales", sf)
    # TE's GEMM-ready scale layout (transposed, rows padded to a multiple of 4)
    pad = -(-200 // 4) * 4
    gr = np.zeros((si.shape[1], pad), np.float32)
    gr[:, :200] = si.T
    run("check", "quantize", xf, "--codes", cf, "--scales", save("gr.npy", gr), "--scale-layout", "gemm_ready")
    # TE's columnwise copies: 128x1 codes [cols, rows] with GEMM-ready scales [ceil(rows/128), roundup(cols, 4)]
    # (numpy: a 128x1 quantizer is the 1x128 one on the transpose), and 128x128 columnwise scales
    # [ceil(cols/128), roundup(ceil(rows/128), 4)]
    x2 = activations(256, 200)
    ccol, scol = te_pow2_1x128(np.ascontiguousarray(x2.T))  # [200, 256] codes, [200, 2] scales
    gr_col = np.zeros((2, 200), np.float32)  # roundup(200, 4) = 200
    gr_col[:, :] = scol.T
    x2f = save("x2.npy", x2)
    run("check", "quantize", x2f, "--codes", save("ccol.npy", ccol), "--scales", save("gcol.npy", gr_col),
        "--granularity", "128x1", "--codes-layout", "transposed", "--scale-layout", "gemm_ready")
    bad = ccol.copy()
    bad[150, 3] ^= 0x01  # column 150 of x2, row 3
    p = run("check", "quantize", x2f, "--codes", save("ccolb.npy", bad), "--scales", save("gcol.npy", gr_col),
            "--granularity", "128x1", "--codes-layout", "transposed", "--scale-layout", "gemm_ready", "--json", rc=1)
    m = json.loads(p.stdout)["mismatches"][0]
    assert (m["row"], m["col"], m["row_tile"], m["col_tile"]) == (3, 150, 0, 150), m
    # 128x128 columnwise (codes [cols, rows], scales [ceil(cols/128), roundup(ceil(rows/128), 4)]): the layout
    # transform in numpy of fp8flow's own rowwise output (this checks the layout reading, not the numerics)
    run("quantize", x2f, os.path.join(TMP, "q2"), "--granularity", "128x128", "--quiet")
    c2 = np.load(os.path.join(TMP, "q2.codes.npy"))
    s2 = np.load(os.path.join(TMP, "q2.scale_inv.npy"))  # [2, 2]
    g2 = np.zeros((2, 4), np.float32)
    g2[:, :2] = s2.T
    run("check", "quantize", x2f, "--codes", save("c2t.npy", np.ascontiguousarray(c2.T)), "--scales",
        save("g2.npy", g2), "--granularity", "128x128", "--codes-layout", "transposed", "--scale-layout", "gemm_ready")
    # ... given as compact, the shape is wrong: bad input naming the file and the layouts
    p = run("check", "quantize", xf, "--codes", cf, "--scales", save("gr.npy", gr), rc=1)
    assert "gr.npy" in p.stderr and "compact" in p.stderr, p.stderr


def check_transpose_fork_layout():
    groups = [150, 0, 106, 256]
    kept = [g for g in groups if g > 0]
    x = activations(sum(groups), 256)
    codes, si = te_pow2_1x128(x)
    cols, csis = fork_sat(codes, si, kept)
    rc, rs = save("rc.npy", codes), save("rs.npy", si)
    clist = ",".join(save(f"col{i}.npy", c) for i, c in enumerate(cols))
    slist = ",".join(save(f"csi{i}.npy", s) for i, s in enumerate(csis))
    g = ",".join(map(str, kept))
    p = run("check", "transpose", rc, rs, "--codes", clist, "--scales", slist, "--method", "paper_kernel",
            "--groups", g, "--json")
    j = json.loads(p.stdout)
    assert j["bitexact"] is True and j["elements"] == codes.size, j
    # exact differs from the fork's kernel, and the report says why: below the normal range
    p = run("check", "transpose", rc, rs, "--codes", clist, "--scales", slist, "--method", "exact", "--groups", g,
            "--json", "--max-mismatches", "5", rc=1)
    j = json.loads(p.stdout)
    assert j["elements_mismatched"] > 0 and j["scales_mismatched"] == 0, j
    assert set(j["causes"]) <= {"underflow", "rounding_tie", "rounding_ulp", "sign_of_zero"}, j["causes"]
    # One concatenated [cols, rows] column copy (np.concatenate(cols, axis=1)) and [sum nb, cols] scales
    cat_c = save("cat_c.npy", np.concatenate(cols, axis=1))
    cat_s = save("cat_s.npy", np.concatenate(csis, axis=0))
    run("check", "transpose", rc, rs, "--codes", cat_c, "--scales", cat_s, "--method", "paper_kernel", "--groups", g)
    # The per-group blocks flattened into one file: --codes-layout group_blocks
    flat = save("flat.npy", np.concatenate([c.ravel() for c in cols]))
    run("check", "transpose", rc, rs, "--codes", flat, "--scales", cat_s, "--method", "paper_kernel", "--groups", g,
        "--codes-layout", "group_blocks")
    # ... read as one [cols, rows] array, it is a layout difference, and the report says so
    p = run("check", "transpose", rc, rs, "--codes", flat, "--scales", cat_s, "--method", "paper_kernel", "--groups",
            g, "--codes-layout", "rowwise", "--json", rc=None)
    # rowwise needs [rows, cols]-shaped data; a 1-D file of the right size is accepted and compared
    j = json.loads(p.stdout)
    assert p.returncode == 1 and j["layout"] and j["causes"] == {"layout": j["elements_mismatched"]}, j
    # Planted fault in group 3 (rows 256..511 of the input; output column copy 2 of the kept list)
    bad = [c.copy() for c in cols]
    bad[2][200, 17] ^= 0x08  # exponent lsb: input row 256 + 17 = 273, column 200
    blist = ",".join(save(f"bad{i}.npy", c) for i, c in enumerate(bad))
    p = run("check", "transpose", rc, rs, "--codes", blist, "--scales", slist, "--method", "paper_kernel", "--groups",
            g, "--json", rc=1)
    j = json.loads(p.stdout)
    assert j["elements_mismatched"] == 1, j
    m = j["mismatches"][0]
    # groups given without the empty one: 150, 106, 256 -> group index 2; row tiles 2 + 1 + (17 // 128)
    assert (m["row"], m["col"], m["group"], m["row_tile"], m["col_tile"]) == (273, 200, 2, 3, 200), m
    # GEMM-ready padded column scales (cols padded to a multiple of 4: here already; pad 2 more rows? no --
    # the padding is along columns): 256 columns -> unchanged shape, accepted as gemm_ready too
    run("check", "transpose", rc, rs, "--codes", cat_c, "--scales", cat_s, "--method", "paper_kernel", "--groups", g,
        "--scale-layout", "gemm_ready")
    # Input scales in TE's GEMM-ready layout [ceil(cols/128), roundup(rows, 4)]
    pad = -(-codes.shape[0] // 4) * 4
    gr = np.zeros((si.shape[1], pad), np.float32)
    gr[:, :codes.shape[0]] = si.T
    run("check", "transpose", rc, save("rs_gr.npy", gr), "--codes", cat_c, "--scales", cat_s, "--method",
        "paper_kernel", "--groups", g, "--input-scale-layout", "gemm_ready")
    # The groups as the kernel got them (m_splits with the empty group) and one file per group, the empty one a
    # [cols, 0] tensor as the fork returns it: the same check, and groups numbered as given
    full = [cols[0], np.zeros((256, 0), np.uint8), cols[1], cols[2]]
    fsc = [csis[0], np.zeros((0, 256), np.float32), csis[1], csis[2]]
    blist4 = ",".join(save(f"b4_{i}.npy", c) for i, c in enumerate([full[0], full[1], bad[1], bad[2]]))
    slist4 = ",".join(save(f"s4_{i}.npy", c) for i, c in enumerate(fsc))
    p = run("check", "transpose", rc, rs, "--codes", blist4, "--scales", slist4, "--method", "paper_kernel",
            "--groups", ",".join(map(str, groups)), "--json", rc=1)
    m = json.loads(p.stdout)["mismatches"][0]
    assert (m["row"], m["col"], m["group"]) == (273, 200, 3), m  # group 3 of 150,0,106,256
    # A list of the wrong length names the count
    p = run("check", "transpose", rc, rs, "--codes", clist, "--scales", slist, "--method", "paper_kernel", rc=1)
    assert "3 files for 1 expert groups" in p.stderr, p.stderr


def check_convert_dequantize_gemm():
    x = (RNG.standard_normal(1000) * 300).astype(np.float32)
    want = np.clip(x, -448, 448).astype(md.float8_e4m3fn).view(np.uint8)
    xf = save("cx.npy", x)
    run("check", "convert", xf, "--codes", save("cc.npy", want), "--to", "e4m3")
    bad = want.copy()
    bad[999] ^= 0x80
    p = run("check", "convert", xf, "--codes", save("cb.npy", bad), "--to", "e4m3", "--json", rc=1)
    j = json.loads(p.stdout)
    assert j["elements_mismatched"] == 1 and j["mismatches"][0]["col"] == 999, j
    # nonsat kernel checked as satfinite: every difference is saturation
    ns = x.astype(md.float8_e4m3fn).view(np.uint8)  # ml_dtypes does not saturate
    p = run("check", "convert", xf, "--codes", save("cn.npy", ns), "--to", "e4m3", "--json", rc=1)
    j = json.loads(p.stdout)
    assert j["elements_mismatched"] == int(np.sum(np.abs(x) > 464)) and set(j["causes"]) == {"saturation"}, j
    # dequantize: RN32(code * scale_inv), numpy
    xq = activations(64, 256)
    codes, si = te_pow2_1x128(xq)
    deq = (codes.view(md.float8_e4m3fn).astype(np.float32) * np.repeat(si, 128, axis=1)).astype(np.float32)
    cf, sf = save("dc.npy", codes), save("ds.npy", si)
    run("check", "dequantize", cf, sf, "--values", save("dq.npy", deq), "--granularity", "1x128")
    deq[3, 4] = np.nextafter(deq[3, 4], np.float32(np.inf))
    p = run("check", "dequantize", cf, sf, "--values", save("dq2.npy", deq), "--granularity", "1x128", "--json", rc=1)
    m = json.loads(p.stdout)["mismatches"][0]
    assert (m["row"], m["col"], m["ulp"], m["cause"]) == (3, 4, 1, "rounding_ulp"), m
    # gemm: exact model equals a float64 dot product rounded once (small integers: exact sums)
    a = RNG.integers(0x30, 0x48, (8, 64)).astype(np.uint8)
    b = RNG.integers(0x30, 0x48, (5, 64)).astype(np.uint8)
    av = a.view(md.float8_e4m3fn).astype(np.float64)
    bv = b.view(md.float8_e4m3fn).astype(np.float64)
    out = (av @ bv.T).astype(np.float32)
    af, bf = save("ga.npy", a), save("gb.npy", b)
    run("check", "gemm", af, bf, "--values", save("go.npy", out), "--accum", "exact")
    p = run("check", "gemm", af, bf, "--values", save("got.npy", np.ascontiguousarray(out.T)), "--accum", "exact",
            rc=1)
    # [5, 8] for an [8, 5] product: shape named
    assert "shape" in p.stderr and "[8, 5]" in p.stderr, p.stderr
    # a tiled granularity without its scale file is a usage error, as in `fp8flow gemm` (one operand loader)
    gu = save("gu.npy", out)
    before = sorted(os.listdir(TMP))
    p = run("check", "gemm", af, bf, "--values", gu, "--granularity-a", "1x128", "-o", os.path.join(TMP, "gu.h5"),
            rc=2)
    assert "--granularity-a 1x128 needs --scale-a" in p.stderr, p.stderr
    assert sorted(os.listdir(TMP)) == before, "nothing written"


def check_errors_exit_codes():
    x = activations(4, 128)
    codes, si = te_pow2_1x128(x)
    xf, cf, sf = save("ex.npy", x), save("ec.npy", codes), save("es.npy", si)
    run("check", "quantize", xf, "--codes", cf, "--scales", sf)
    p = run("check", "quantize", xf, "--codes", os.path.join(TMP, "missing.npy"), "--scales", sf, rc=1)
    assert "missing.npy" in p.stderr, p.stderr
    p = run("check", "quantize", xf, "--codes", sf, "--scales", sf, rc=1)
    assert "es.npy" in p.stderr and "uint8" in p.stderr, p.stderr
    p = run("check", "quantize", xf, "--codes", save("ec_t.npy", codes.T.copy()), "--scales", sf, rc=1)
    assert "other layout matches" in p.stderr, p.stderr
    p = run("check", "quantize", xf, "--codes", cf, "--scales", sf, "--scale", "nope", rc=2)  # an invalid choice
    assert "nope" in p.stderr, p.stderr
    run("check", "quantize", xf, "--scales", sf, rc=2)          # --codes missing: usage
    run("check", "quantize", "--bogus", rc=2)
    run("check", rc=2)                                          # neither an experiment nor a kernel check
    p = run("check", "transpose", cf, sf, "--codes", cf, "--scales", sf, "--method", "direct", rc=2)
    assert "direct" in p.stderr, p.stderr
    # `check EXPERIMENT` still validates experiment files
    exp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "experiments", "quickstart.toml")
    if os.path.exists(exp):
        run("check", exp)
    run("check", "quantize", "--help")


def check_store_and_report():
    x = activations(32, 256)
    codes, si = te_pow2_1x128(x)
    xf, sf = save("sx.npy", x), save("ss.npy", si)
    store = os.path.join(TMP, "checks.h5")
    run("check", "quantize", xf, "--codes", save("sc.npy", codes), "--scales", sf, "-o", store, "--label", "good")
    bad = codes.copy()
    bad[31, 255] ^= 0x01
    run("check", "quantize", xf, "--codes", save("sb.npy", bad), "--scales", sf, "-o", store, rc=1)
    with h5py.File(store, "r") as f:
        runs = list(f["runs"])
        assert len(runs) == 2, runs
        kinds = {f["runs"][h].attrs["kind"] for h in runs}
        assert kinds == {"kernel_check"}, kinds
        bad_run = [f["runs"][h] for h in runs if int(f["runs"][h].attrs["elements_mismatched"]) == 1][0]
        t = bad_run["tables"]["mismatches"]
        assert int(t["row"][0]) == 31 and int(t["col"][0]) == 255, (t["row"][()], t["col"][()])
        causes = dict(zip([c.decode() if isinstance(c, bytes) else c for c in bad_run["tables"]["causes"]["cause"][()]],
                          bad_run["tables"]["causes"]["count"][()]))
        assert sum(causes.values()) == 1, causes
    p = run("ls", store)
    assert p.stdout.count("kernel_check") == 2, p.stdout
    h = [h for h in runs][0]
    run("show", store, h[:8])
    run("show", store, h[:8], "--json")
    # the risk report has no rule for kernel checks, but must not break on a store holding them
    run("report", store, "-o", os.path.join(TMP, "r.html"))
    # re-running the same check is recognised (same parameters and the same outputs)
    p = run("check", "quantize", xf, "--codes", save("sc.npy", codes), "--scales", sf, "-o", store, "--label", "good")
    assert "already stored" in p.stderr, p.stderr


GROUPS = {f.__name__: f for f in [check_quantize_exact_and_faults, check_transpose_fork_layout,
                                   check_convert_dequantize_gemm, check_errors_exit_codes, check_store_and_report]}

if __name__ == "__main__":
    run_groups(GROUPS)
