#!/usr/bin/env python3
"""End-to-end tests of `fp8flow moe` and `fp8flow dataflows` (issue 6), through the real binary.

Usage: test_moe.py FP8FLOW_BINARY [GROUP ...]   (groups: see GROUPS below; default: all)

The numerical golden checks of the layer (finite differences, MPFR, accumulation models) are C++ tests
(tests/test_moe_layer.cpp, test_dataflow.cpp, test_gemm.cpp); these check what a user sees: the JSON, the
cast counts against the paper's figures, determinism across thread counts, user dataflows in TOML and .npy
inputs, and the errors for bad input.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="fp8flow-moe-")


def run(*args, check_rc=0):
    p = subprocess.run([BIN, "--quiet", *map(str, args)], capture_output=True, text=True, timeout=280)
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f"fp8flow {' '.join(map(str, args))}: exit {p.returncode}, expected {check_rc}\n"
                             f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def moe_json(*args):
    return json.loads(run("moe", "--json", *args).stdout)


def sqnr(d, tensor):
    for t in d["tensors"]:
        if t["tensor"] == tensor:
            v = t["metrics"]["sqnr_db"]
            return math.inf if v == "inf" else float(v)
    raise AssertionError(f"{d['name']}: no tensor {tensor} in {[t['tensor'] for t in d['tensors']]}")


def metrics_without_timings(j):
    """The JSON minus wall-clock fields, for comparing runs."""
    out = []
    for d in j["dataflows"]:
        out.append((d["name"], json.dumps(d["tensors"], sort_keys=True), json.dumps(d["casts"], sort_keys=True)))
    return out


def moe_end_to_end():
    j = moe_json("--preset", "tiny", "--dataflow", "all")
    names = [d["name"] for d in j["dataflows"]]
    assert names == ["fp64", "bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow"], names
    by = {d["name"]: d for d in j["dataflows"]}
    # fp64 is the golden layer itself: every tensor exact.
    for t in by["fp64"]["tensors"]:
        assert t["metrics"]["sqnr_db"] == "inf", t
    # Every other dataflow has a finite, plausible error on the output and the input gradient, and the FP8
    # dataflows are less accurate than bf16 (3 vs 8 significant bits).
    for name in names[1:]:
        for tensor in ("y", "dx", "dw1", "dw2"):
            s = sqnr(by[name], tensor)
            assert 5.0 < s < 80.0, (name, tensor, s)
    for name in names[2:]:
        assert sqnr(by[name], "y") < sqnr(by["bf16"], "y") - 6.0, (name, sqnr(by[name], "y"), sqnr(by["bf16"], "y"))
    # Cast counts come from the graphs; the paper counts 12 explicit casts for the conventional recipe and 2
    # for FP8-Flow (PAPER.md 2); double quantization adds a DQ->T->Q pair per naive transpose.
    assert by["fp8_blockwise"]["casts"]["explicit_casts"] == 12, by["fp8_blockwise"]["casts"]
    assert by["fp8_flow"]["casts"]["explicit_casts"] == 2, by["fp8_flow"]["casts"]
    assert by["fp8_flow"]["casts"]["scaling_aware_transpose"] > 0
    dq = by["fp8_double_quant"]["casts"]
    assert dq["explicit_casts"] == dq["explicit_quantize"] + dq["explicit_dequantize"] + 2 * dq["naive_transpose"]
    assert dq["explicit_casts"] > by["fp8_blockwise"]["casts"]["explicit_casts"], dq  # the DQ->T->Q pairs
    for name in ("fp64", "bf16"):
        assert by[name]["casts"]["explicit_casts"] == 0
    # The traffic model is present and FP8-Flow keeps less activation memory than bf16.
    assert by["fp8_flow"]["traffic"] and by["bf16"]["traffic"]


def moe_transpose_variants():
    # paper_kernel and exact SAT differ only where a shifted exponent leaves the normal range: on the tiny
    # preset both must be close, and `exact` can never be worse than the paper's kernel by more than noise.
    pk = moe_json("--preset", "tiny", "--dataflow", "fp8_flow", "--transpose", "paper_kernel")["dataflows"][0]
    ex = moe_json("--preset", "tiny", "--dataflow", "fp8_flow", "--transpose", "exact")["dataflows"][0]
    for tensor in ("y", "dx", "dw1", "dw2"):
        assert abs(sqnr(pk, tensor) - sqnr(ex, tensor)) < 3.0, (tensor, sqnr(pk, tensor), sqnr(ex, tensor))
    # The accumulation override reaches the fp8 GEMMs: exact accumulation changes some output bits.
    acc = moe_json("--preset", "tiny", "--dataflow", "fp8_flow", "--accum", "exact")["dataflows"][0]
    assert json.dumps(acc["tensors"], sort_keys=True) != json.dumps(pk["tensors"], sort_keys=True)


def moe_threads_deterministic():
    one = json.loads(run("--threads", "1", "moe", "--json", "--preset", "tiny", "--dataflow", "all").stdout)
    two = json.loads(run("--threads", "2", "moe", "--json", "--preset", "tiny", "--dataflow", "all").stdout)
    assert metrics_without_timings(one) == metrics_without_timings(two), "results depend on --threads"
    other_seed = moe_json("--preset", "tiny", "--dataflow", "all", "--seed", "7")
    assert metrics_without_timings(other_seed) != metrics_without_timings(one), "--seed has no effect"


def dataflows_listing_and_toml():
    listing = json.loads(run("dataflows", "--json").stdout)
    assert [d["name"] for d in listing] == ["fp64", "bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow"]
    for d in listing:
        assert d["steps"], d["name"]
    # A builtin graph printed as TOML, loaded back as a user dataflow, computes exactly the same numbers.
    toml = run("dataflows", "--toml", "fp8_flow").stdout
    f = os.path.join(TMP, "my_flow.toml")
    with open(f, "w") as fh:
        fh.write(toml.replace('name = "fp8_flow"', 'name = "my_flow"', 1))
    listed = json.loads(run("dataflows", "--json", "--file", f).stdout)
    assert listed[-1]["name"] == "my_flow" and listed[-1]["casts"] == listing[-1]["casts"]
    mine = moe_json("--preset", "tiny", "--dataflow", f)["dataflows"][0]
    builtin = moe_json("--preset", "tiny", "--dataflow", "fp8_flow")["dataflows"][0]
    assert mine["name"] == "my_flow"
    assert json.dumps(mine["tensors"], sort_keys=True) == json.dumps(builtin["tensors"], sort_keys=True)


def moe_npy_inputs():
    # Inputs from .npy files: the layer must read them (shape taken from the files) and an fp64 run on them
    # is exact; a float32 and a float64 copy of the same values give the same result.
    rng = np.random.default_rng(5)
    T, H, F, E = 40, 256, 128, 4
    arrays = {"x": rng.standard_normal((T, H)), "wr": rng.standard_normal((E, H)) / 16,
              "w1": rng.standard_normal((E, 2 * F, H)) / 16, "w2": rng.standard_normal((E, H, F)) / 11,
              "dy": rng.standard_normal((T, H)) * 2.0**-12}
    results = []
    for dtype in (np.float32, np.float64):
        d = os.path.join(TMP, f"inputs_{np.dtype(dtype).name}")
        os.makedirs(d, exist_ok=True)
        for k, v in arrays.items():
            np.save(os.path.join(d, k + ".npy"), v.astype(np.float32).astype(dtype))
        j = moe_json("--preset", "tiny", "--inputs", d, "--dataflow", "fp64,fp8_flow")  # top-k from the preset
        assert str(T) in j["shape"] and str(H) in j["shape"], j["shape"]
        assert all(t["metrics"]["sqnr_db"] == "inf" for t in j["dataflows"][0]["tensors"])
        results.append(metrics_without_timings(j))
    assert results[0] == results[1]
    # A file of the wrong shape is named in the error.
    d = os.path.join(TMP, "inputs_float32")
    np.save(os.path.join(d, "w2.npy"), np.zeros((E, H, F + 1), np.float32))
    p = run("moe", "--preset", "tiny", "--inputs", d, check_rc=1)
    assert "w2" in p.stderr, p.stderr


def moe_errors():
    cases = [
        (("moe", "--preset", "nope"), "unknown MoE preset 'nope'"),
        (("moe", "--preset", "tiny", "--dataflow", "fp9"), "fp9"),
        (("moe", "--preset", "tiny", "--transpose", "sideways"), "sideways"),
        (("moe", "--preset", "tiny", "--accum", "abacus"), "abacus"),
        (("dataflows", "--toml", "fp9"), "fp9"),
    ]
    for args, needle in cases:  # invalid choices: usage errors
        p = run(*args, check_rc=2)
        assert needle in p.stderr, (args, p.stderr)
    p = run("moe", "--inputs", os.path.join(TMP, "no_such_dir"), check_rc=1)  # a file problem: bad input
    assert "no_such_dir" in p.stderr, p.stderr
    # A user dataflow with a bad field: the error names the file, the step and the field.
    bad = os.path.join(TMP, "bad.toml")
    with open(bad, "w") as fh:
        fh.write('name = "bad"\n[[step]]\nop = "quantize"\nin = ["x"]\nout = ["x.q"]\nrecipe = "1x128:nonsense"\n')
    p = run("moe", "--preset", "tiny", "--dataflow", bad, check_rc=1)
    assert "bad.toml" in p.stderr and "recipe" in p.stderr, p.stderr
    with open(bad, "w") as fh:
        fh.write('name = "bad"\n[[step]]\nop = "gemm"\nin = ["nothing", "w1"]\nout = ["h"]\n')
    p = run("dataflows", "--file", bad, check_rc=1)
    assert "nothing" in p.stderr, p.stderr
    # Usage errors are exit 2.
    run("moe", "--no-such-flag", check_rc=2)


GROUPS = {f.__name__: f for f in (moe_end_to_end, moe_transpose_variants, moe_threads_deterministic,
                                  dataflows_listing_and_toml, moe_npy_inputs, moe_errors)}

if __name__ == "__main__":
    from harness import run_groups

    run_groups(GROUPS)
