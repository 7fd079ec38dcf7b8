"""Property tests (hypothesis): the bindings against the command line on random shapes, expert groups and
values. Same C++ underneath, but two separate front ends (argument parsing, .npy files, layouts) that must
agree bit for bit."""
import json
import os
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fp8flow

SETTINGS = settings(max_examples=int(os.environ.get("FP8FLOW_HYPOTHESIS_EXAMPLES", "20")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def run(bin_, *args, rc=0):
    p = subprocess.run([bin_, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert p.returncode == rc, f"fp8flow {' '.join(map(str, args))}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@st.composite
def tensors(draw, max_rows=300, max_cols=300):
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = draw(st.sampled_from([0.0, 4.0, 16.0, 40.0]))
    x = (rng.standard_normal((rows, cols)) * np.exp2(rng.uniform(-spread, spread, (rows, cols)))).astype(np.float32)
    specials = draw(st.lists(st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 500.0, 1e30]),
                             max_size=4))
    for v in specials:
        x[rng.integers(rows), rng.integers(cols)] = v
    return x


@st.composite
def group_sizes(draw, rows):
    n = draw(st.integers(1, min(5, rows)))
    cuts = sorted(draw(st.lists(st.integers(1, rows - 1), min_size=n - 1, max_size=n - 1, unique=True))) \
        if rows > 1 and n > 1 else []
    bounds = [0, *cuts, rows]
    return [b - a for a, b in zip(bounds, bounds[1:])]


RECIPES = [("1x128", "te_pow2"), ("1x128", "te_fp32"), ("128x128", "te_pow2"), ("1x128", "deepgemm"),
           ("128x128", "deepgemm_ue8m0"), ("1x32", "mx_floor"), ("1x32", "mx_ceil"), ("128x1", "te_pow2"),
           ("tensor", "te_fp32"), ("row", "paper_swiglu"), ("1x128", "paper_swiglu")]


@SETTINGS
@given(data=st.data(), x=tensors(), recipe=st.sampled_from(RECIPES), fmt=st.sampled_from(["e4m3", "e5m2"]))
def test_quantize_bindings_equal_cli(fp8flow_bin, data, x, recipe, fmt):
    gran, rule = recipe
    groups = data.draw(group_sizes(x.shape[0])) if gran != "tensor" and data.draw(st.booleans()) else None
    eps = data.draw(st.sampled_from([None, 1e-10])) if rule.startswith("te_") else None
    q = fp8flow.quantize(x, format=fmt, granularity=gran, scale=rule, groups=groups, eps=eps)
    with tempfile.TemporaryDirectory() as d:
        xf, cf, sf = (os.path.join(d, n) for n in ("x.npy", "c.npy", "s.npy"))
        np.save(xf, x)
        np.save(cf, q.codes)
        np.save(sf, q.scale_inv)
        args = ["check", "quantize", xf, "--codes", cf, "--scales", sf, "--format", fmt, "--granularity", gran,
                "--scale", rule, "--json"]
        if groups:
            args += ["--groups", ",".join(map(str, groups))]
        if eps is not None:
            args += ["--eps", repr(eps)]
        j = json.loads(run(fp8flow_bin, *args).stdout)
        assert j["bitexact"] and j["elements"] == x.size
        if not groups:  # the plain quantize command writes the same files
            run(fp8flow_bin, "quantize", xf, os.path.join(d, "q"), "--format", fmt, "--granularity", gran, "--scale",
                rule, *(["--eps", repr(eps)] if eps is not None else []), "--quiet")
            np.testing.assert_array_equal(np.load(os.path.join(d, "q.codes.npy")), q.codes)
            np.testing.assert_array_equal(np.load(os.path.join(d, "q.scale_inv.npy")).view(np.uint32),
                                          q.scale_inv.view(np.uint32))


@SETTINGS
@given(data=st.data(), x=tensors(max_rows=400, max_cols=260),
       method=st.sampled_from(["naive", "paper_kernel", "exact"]))
def test_transpose_bindings_equal_cli(fp8flow_bin, data, x, method):
    x = np.nan_to_num(x, nan=1.0, posinf=448.0, neginf=-448.0)  # SAT inputs: finite pow2-scaled tensors
    groups = data.draw(group_sizes(x.shape[0])) if data.draw(st.booleans()) else None
    rnd = data.draw(st.sampled_from(["rne", "rz", "ru", "rd", "rna"])) if method == "exact" else "rne"
    q = fp8flow.quantize(x)
    t = fp8flow.transpose(q, method=method, groups=groups, round=rnd)
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n + ".npy") for n in ("rc", "rs", "c", "s")}
        np.save(paths["rc"], q.codes)
        np.save(paths["rs"], q.scale_inv)
        np.save(paths["c"], t.codes)
        np.save(paths["s"], t.scale_inv)
        args = ["check", "transpose", paths["rc"], paths["rs"], "--codes", paths["c"], "--scales", paths["s"],
                "--method", method, "--round", rnd, "--json"]
        if groups:
            args += ["--groups", ",".join(map(str, groups))]
        assert json.loads(run(fp8flow_bin, *args).stdout)["bitexact"]


@SETTINGS
@given(x=tensors(max_rows=20, max_cols=200), fmt=st.sampled_from(["e4m3", "e5m2", "e4m3fnuz", "e2m1", "e3m2"]),
       rnd=st.sampled_from(["rne", "rz", "ru", "rd", "rna", "stochastic"]),
       overflow=st.sampled_from(["satfinite", "nonsat"]), seed=st.integers(0, 1000))
def test_convert_bindings_equal_cli(fp8flow_bin, x, fmt, rnd, overflow, seed):
    c = fp8flow.convert(x, fmt, round=rnd, overflow=overflow, seed=seed)
    with tempfile.TemporaryDirectory() as d:
        xf, of = os.path.join(d, "x.npy"), os.path.join(d, "o.npy")
        np.save(xf, x)
        run(fp8flow_bin, "convert", xf, of, "--to", fmt, "--round", rnd, "--overflow", overflow, "--seed", seed,
            "--quiet")
        np.testing.assert_array_equal(np.load(of), c)


@SETTINGS
@given(data=st.data(), m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 300),
       accum=st.sampled_from(["exact", "fp32_seq", "fp32_pairwise", "promote", "hopper_fast", "h100"]))
def test_gemm_bindings_equal_cli(fp8flow_bin, data, m, n, k, accum):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(0, 256, (n, k), dtype=np.uint8)
    a[(a & 0x7F) == 0x7F] = 0x38  # no NaN codes: NaN outputs compare by bits, fine, but keep sums finite
    b[(b & 0x7F) == 0x7F] = 0x38
    out = fp8flow.gemm(a, b, accum=accum)
    with tempfile.TemporaryDirectory() as d:
        af, bf, of = (os.path.join(d, f) for f in ("a.npy", "b.npy", "o.npy"))
        np.save(af, a)
        np.save(bf, b)
        np.save(of, out)
        assert json.loads(run(fp8flow_bin, "check", "gemm", af, bf, "--values", of, "--accum", accum,
                              "--json").stdout)["bitexact"]
