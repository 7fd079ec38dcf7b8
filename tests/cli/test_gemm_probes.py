#!/usr/bin/env python3
"""End-to-end tests of `fp8flow gemm-probes`, `fp8flow gemm --accum h100|h100_fast` and the input checks of
`fp8flow validate --gpu --op gemm` (no GPU needed).
Usage: test_gemm_probes.py FP8FLOW_BINARY [GROUP ...]"""
import json
import os
import subprocess
import sys
import tempfile

import ml_dtypes
import numpy as np

BIN = sys.argv[1]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data", "gemm_probes_h100")


def run(*args, ok=True):
    p = subprocess.run([BIN, "--quiet", *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def gemm_probes_list_and_check():
    out = run("gemm-probes", "--list").stdout
    assert "group_scan" in out and "rand_tail_k4112" in out, out
    r = json.loads(run("gemm-probes", "--check", DATA, "--cases", "group_scan,rand_tail_k144,adv_extreme_k4096",
                       "--json").stdout)
    assert r["compared"] > 0 and r["bit_exact"] == r["compared"], r
    # Another model is not bit-exact on the same records (the check can fail).
    r2 = json.loads(run("gemm-probes", "--check", DATA, "--cases", "rand_tail_k144", "--accum", "fp32_seq",
                        "--json").stdout)
    assert r2["bit_exact"] < r2["compared"], r2


def gemm_probes_errors():
    p = run("gemm-probes", "--gpu", "-o", tempfile.mkdtemp(), "--cases", "no_such_case", ok=False)
    assert p.returncode == 2 and "no_such_case" in p.stderr, (p.returncode, p.stderr)
    p = run("gemm-probes", "--check", "/nonexistent/dir", ok=False)
    assert p.returncode == 1 and "gemm_probes.json" in p.stderr, (p.returncode, p.stderr)
    p = run("validate", "--gpu", "--op", "gemm", "--shape", "64,64,100", ok=False)
    assert p.returncode == 2 and "multiple of 16" in p.stderr, (p.returncode, p.stderr)


def gemm_accum_presets():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(8, 300)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    b = rng.normal(size=(6, 300)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/a.npy", a)
        np.save(f"{d}/b.npy", b)
        outs = {}
        for m in ("h100", "h100_fast", "exact"):
            run("gemm", f"{d}/a.npy", f"{d}/b.npy", f"{d}/{m}.npy", "--accum", m)
            outs[m] = np.load(f"{d}/{m}.npy")
            assert outs[m].shape == (8, 6) and outs[m].dtype == np.float32
        ref = a.view(ml_dtypes.float8_e4m3fn).astype(np.float64) @ b.view(ml_dtypes.float8_e4m3fn).astype(np.float64).T
        for m in ("h100", "h100_fast"):  # 14-bit accumulator: close to the exact result, not equal to it
            assert np.all(np.abs(outs[m] - ref) <= 2.0 ** -10 * np.abs(a.view(ml_dtypes.float8_e4m3fn).astype(
                np.float64)) @ np.abs(b.view(ml_dtypes.float8_e4m3fn).astype(np.float64)).T * 300), m
        p = run("gemm", f"{d}/a.npy", f"{d}/b.npy", f"{d}/x.npy", "--accum", "h200", ok=False)
        assert p.returncode == 2 and "h100_fast" in p.stderr, p.stderr


def gemm_algo_cli():
    """fp8flow gemm --algo / --out-dtype / --algo auto with a table (issue 20)."""
    K = 65536
    ones = np.full((2, K), 0x38, dtype=np.uint8)  # e4m3 1.0
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/a.npy", ones)
        np.save(f"{d}/b.npy", np.full((16, K), 0x38, dtype=np.uint8))
        # A 14-bit fast-accumulated chain stalls at 2^14; four splits of 16384 each reach it, summed exactly.
        run("gemm", f"{d}/a.npy", f"{d}/b.npy", f"{d}/o1.npy", "--accum", "h100_fast")
        run("gemm", f"{d}/a.npy", f"{d}/b.npy", f"{d}/o4.npy", "--accum", "h100_fast", "--algo",
            "splitk=4,reduction=compute")
        assert (np.load(f"{d}/o1.npy") == 16384).all() and (np.load(f"{d}/o4.npy") == 65536).all()
        # --algo auto from a table: the grid point (M 1, N 16, K 65536) says split-K 4, reduction 2 (compute).
        with open(f"{d}/t.csv", "w") as f:
            f.write("# test table\nscaling,fast_accum,out,m,n,k,algo_id,tile,stages,splitk,reduction\n")
            f.write("tensor,1,f32,1,16,65536,66,1,1,4,2\ntensor,1,f32,1,16,1024,66,1,1,1,0\n")
        p = run("gemm", f"{d}/a.npy", f"{d}/b.npy", f"{d}/oa.npy", "--accum", "h100_fast", "--algo", "auto",
                "--algo-table", f"{d}/t.csv")
        assert (np.load(f"{d}/oa.npy") == 65536).all()
        assert "not in the H100 table" in p.stderr and "M=1 N=16 K=65536" in p.stderr, p.stderr  # M = 2: off-grid
        # bf16 output: the fp32 result rounded to nearest even (ml_dtypes as the oracle), stored as uint16 codes.
        rng = np.random.default_rng(9)
        a = rng.normal(size=(5, 512)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
        b = rng.normal(size=(16, 512)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
        np.save(f"{d}/ra.npy", a)
        np.save(f"{d}/rb.npy", b)
        run("gemm", f"{d}/ra.npy", f"{d}/rb.npy", f"{d}/f.npy", "--accum", "h100")
        run("gemm", f"{d}/ra.npy", f"{d}/rb.npy", f"{d}/h.npy", "--accum", "h100", "--out-dtype", "bf16")
        h = np.load(f"{d}/h.npy")
        assert h.dtype == np.uint16 and h.shape == (5, 16)
        assert (h == np.load(f"{d}/f.npy").astype(ml_dtypes.bfloat16).view(np.uint16)).all()
        # Bad option values: usage errors (exit 2) naming the field; a missing table file: exit 1 naming it.
        for args, want, code in ((("--algo", "splitk=4"), "needs a reduction", 2),
                                 (("--algo", "splitk=two"), "splitk=two", 2), (("--algo", "tiles=2"), "unknown key", 2),
                                 (("--out-dtype", "fp16"), "--out-dtype", 2),
                                 (("--algo", "auto", "--algo-table", f"{d}/none.csv"), "none.csv", 1)):
            p = run("gemm", f"{d}/ra.npy", f"{d}/rb.npy", f"{d}/x.npy", "--accum", "h100", *args, ok=False)
            assert p.returncode == code and want in p.stderr, (args, p.returncode, p.stderr)
        with open(f"{d}/bad.csv", "w") as f:
            f.write("scaling,fast_accum,out,m,n,k,splitk,reduction\ntensor,0,f32,5,16,x,1,0\n")
        p = run("gemm", f"{d}/ra.npy", f"{d}/rb.npy", f"{d}/x.npy", "--accum", "h100", "--algo", "auto",
                "--algo-table", f"{d}/bad.csv", ok=False)
        assert p.returncode == 1 and "bad.csv:2" in p.stderr and "field k" in p.stderr, p.stderr
        assert not os.path.exists(f"{d}/x.npy")


GROUPS = {f.__name__: f for f in (gemm_probes_list_and_check, gemm_probes_errors, gemm_accum_presets, gemm_algo_cli)}

if __name__ == "__main__":
    for name in sys.argv[2:] or list(GROUPS):
        GROUPS[name]()
        print(f"{name}: ok")
