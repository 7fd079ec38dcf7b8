#!/usr/bin/env python3
"""Tests of `fp8flow report` (issue 9): the risk rules' JSON verdicts on results stores built here with h5py
(independently of fp8flow's writer, following docs/results-format.md and the train schema), where the answer
is known by construction; bad input; the HTML page in headless Chromium; and a real store from `fp8flow run`.

Usage: test_report.py FP8FLOW_BINARY SOURCE_DIR GROUP
Groups: verdicts, missing_data, moe_transpose, errors, html, real. Exit 77 = skipped (reason printed).
Thresholds are read from the report's own rule catalog (`rules` in the JSON), so that the constructed "good"
values sit well inside `pass` and the "bad" ones well past `fail` whatever docs/risk.md calibrates them to.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

BIN = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(sys.argv[2])
GROUP = sys.argv[3]
TMP = tempfile.mkdtemp(prefix=f"fp8flow-report-{GROUP}-")
SKIP = 77
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def path(name):
    return os.path.join(TMP, name)


# ---- Building stores with h5py (docs/results-format.md) ----------------------------------------------
STR = h5py.string_dtype()


def write_store(file, runs):
    with h5py.File(file, "w") as f:
        f.attrs["fp8flow_schema_version"] = np.int64(1)
        f.attrs["creator"] = "test_report.py"
        f.attrs["created"] = "2026-01-01T00:00:00.000Z"
        g = f.create_group("runs")
        for i, r in enumerate(runs):
            h = r.get("hash") or f"{i:016x}"
            r["hash"] = h
            rg = g.create_group(h)
            params = r["params"]
            for k, v in params.items():
                rg.attrs[k] = v if not isinstance(v, int) else np.int64(v)
            for k, v in {"kind": r["kind"], "hash": h, "experiment": "test", "label": r.get("label", h),
                         "summary": r.get("summary", ""), "params_json": json.dumps(params, sort_keys=True),
                         "fp8flow_version": "0.1.0", "git_commit": "testcommit", "compiler": "none",
                         "build_type": "Release", "cxx_flags": "", "host": "testhost",
                         "start_time": "2026-01-01T00:00:00.000Z", "end_time": "2026-01-01T00:00:01.000Z"}.items():
                rg.attrs[k] = v
            rg.attrs["threads"] = np.int64(1)
            tg = rg.create_group("tables")
            rg.create_group("histograms")
            for tname, cols in r["tables"].items():
                t = tg.create_group(tname)
                t.attrs["columns"] = np.array([c[0] for c in cols], dtype=object).astype(STR)
                t.attrs["description"] = tname
                for cname, units, values in cols:
                    if units == "":
                        d = t.create_dataset(cname, data=np.array(values, dtype=object), dtype=STR)
                    elif units in ("index", "count"):
                        d = t.create_dataset(cname, data=np.array(values, dtype=np.int64))
                    else:
                        d = t.create_dataset(cname, data=np.array(values, dtype=np.float64))
                    d.attrs["units"] = units
    return file


def train_run(df, seed, *, transpose="paper_kernel", steps=100, layers=2, experts=4, loss_bias=0.0, wgrad_db=30.0,
              bad_expert=None, underflow=1e-5, saturation=0.0, scale_wobble=0.0, nan_last=False, router_shift=0.0,
              growth_db=0.0, casts=None):
    """A train-kind run. Loss = the seed's curve x (1 + loss_bias/100): the relative loss error vs the same seed's
    unbiased run is loss_bias percent exactly. bad_expert = (layer, tensor, expert, sqnr_db)."""
    if casts is None:
        casts = df.startswith("fp8")  # the schema: casts rows for FP8 dataflows only (zero rows otherwise)
    rng = np.random.default_rng(seed)  # the seed's "batches": identical for every dataflow of one seed
    st = np.arange(steps)
    base = 2.0 + 3.0 * np.exp(-st / 20.0) + 0.02 * rng.standard_normal(steps)
    loss = base * (1 + loss_bias / 100.0)
    if nan_last:
        loss[-1] = np.nan
    sampled = [0, steps // 2, steps - 1]
    ge = {k: [] for k in ("step", "layer", "tensor", "expert", "sqnr_db", "rel_err")}
    le = {k: [] for k in ("step", "layer", "tensor", "sqnr_db", "rel_err")}
    ca = {k: [] for k in ("step", "layer", "tensor", "n", "underflow_frac", "saturation_frac", "scale_log2_min",
                          "scale_log2_max", "scale_log2_mean")}
    ro = {k: [] for k in ("step", "layer", "expert", "load")}
    for k, s in enumerate(sampled):
        for l in range(layers):
            for t in ("dx", "dw1", "dw2", "dwr"):
                for e in ([-1] + list(range(experts)) if t in ("dw1", "dw2") else [-1]):
                    q = wgrad_db
                    if bad_expert and (l, t, e) == bad_expert[:3]:
                        q = bad_expert[3]
                    for key, v in zip(ge, (s, l, t, e, q, 10 ** (-q / 20))):
                        ge[key].append(v)
            for t in ("y", "dx"):
                depth = l if t == "y" else layers - 1 - l  # propagation order
                q = 35.0 - growth_db * depth / max(1, layers - 1)
                for key, v in zip(le, (s, l, t, q, 10 ** (-q / 20))):
                    le[key].append(v)
            if casts:
                for t in ("x.q", "act.q", "dout.q"):
                    m = -3.0 + scale_wobble * (-1) ** k
                    for key, v in zip(ca, (s, l, t, 4096, underflow, saturation, m - 2, m + 2, m)):
                        ca[key].append(v)
            for e in range(experts):
                load = 1.0 / experts + (router_shift if e == 0 else -router_shift / (experts - 1))
                for key, v in zip(ro, (s, l, e, load)):
                    ro[key].append(v)
    units = {"step": "index", "layer": "index", "expert": "index", "tensor": "", "n": "count", "sqnr_db": "dB"}
    tab = lambda d: [(k, units.get(k, "1" if k not in ("loss", "lr", "grad_norm") else "value"), v) for k, v in d.items()]
    return {"kind": "train", "label": f"{df} seed={seed}",
            "params": {"preset": "test", "dataflow": df, "transpose": transpose, "seed": seed, "steps": steps,
                       "layers": layers, "experts": experts, "lr": 1e-3},
            "tables": {"steps": tab({"step": list(st), "loss": list(loss), "lr": [1e-3] * steps,
                                     "grad_norm": list(np.ones(steps))}),
                       "grad_error": tab(ge), "layer_error": tab(le), "casts": tab(ca), "router": tab(ro)}}


def report_json(store, env=None, expect_rc=0):
    p = subprocess.run([BIN, "report", store, "--json"], capture_output=True, text=True, env=env)
    check(p.returncode == expect_rc, f"report --json {store}: exit {p.returncode}, expected {expect_rc}; stderr {p.stderr}")
    return json.loads(p.stdout) if p.returncode == 0 else p


def result(j, rule, df):
    for r in j["results"]:
        if r["rule"] == rule and r["dataflow"] == df:
            return r
    FAILURES.append(f"no result for {rule} / {df}")
    return {"status": "missing", "evidence": [], "value": None, "message": ""}


def catalog():
    j = report_json(write_store(path("catalog.h5"), [train_run("bf16", 1)]))
    return {r["id"]: r for r in j["rules"]}


def good(rule):
    return rule["warn"] * 0.3 if rule["worse"] == "higher" else rule["warn"] + 10


def bad(rule):
    if rule["worse"] == "lower":
        return rule["fail"] - 10
    return min(1.0, max(2 * rule["fail"], (1 + rule["fail"]) / 2)) if rule["unit"] == "1" else 2 * rule["fail"]


# ---- Groups -----------------------------------------------------------------------------------------
def test_verdicts():
    R = catalog()
    g = dict(wgrad_db=good(R["wgrad_sqnr_expert"]), underflow=good(R["cast_underflow"]),
             saturation=good(R["cast_saturation"]), scale_wobble=good(R["scale_oscillation"]) / 2,
             router_shift=good(R["router_load_shift"]) / 2, growth_db=good(R["depth_error_growth"]))
    seeds = (1, 2, 3)
    bad_uf = bad(R["cast_underflow"])
    bad_loss = bad(R["loss_rel_error"])
    bad_w = bad(R["wgrad_sqnr_expert"])
    runs = []
    for s in seeds:
        runs += [train_run("fp64", s, **g), train_run("bf16", s, **g),
                 train_run("fp8_flow", s, **g, loss_bias=0.01 * s),                       # good
                 train_run("fp8_double_quant", s, **{**g, "underflow": bad_uf}),          # huge underflow
                 train_run("fp8_blockwise", s, **g, loss_bias=bad_loss),                  # loss diverges from bf16
                 train_run("fp8_flow", s, transpose="exact", **g, bad_expert=(1, "dw2", 3, bad_w))]  # one bad expert
    j = report_json(write_store(path("verdicts.h5"), runs))
    v = j["verdicts"]
    check(v.get("fp8_flow(paper_kernel)") == "pass", f"good fp8_flow(paper_kernel) verdict {v.get('fp8_flow(paper_kernel)')}")
    for rid in ("loss_rel_error", "loss_nonfinite", "wgrad_sqnr_expert", "depth_error_growth", "cast_underflow",
                "cast_saturation", "scale_oscillation", "router_load_shift"):
        check(result(j, rid, "fp8_flow(paper_kernel)")["status"] == "pass", f"good run: {rid} should pass")
    r = result(j, "loss_rel_error", "fp8_flow(paper_kernel)")
    check(abs(r["value"] - 0.02) < 1e-9, f"good run: |mean rel loss error| {r['value']} != 0.02 %")
    check(v.get("bf16") == "pass", f"bf16 (vs fp64) verdict {v.get('bf16')}")
    check(result(j, "loss_rel_error", "fp64")["status"] == "n/a", "fp64 is the reference: n/a")
    # Huge underflow fails, with evidence pointing at the run, tensor, layer and step.
    r = result(j, "cast_underflow", "fp8_double_quant")
    check(r["status"] == "fail" and v.get("fp8_double_quant") == "fail", f"underflow {bad_uf}: {r['status']}")
    dq = {x["hash"] for x in runs if x["params"]["dataflow"] == "fp8_double_quant"}
    e = r["evidence"][0] if r["evidence"] else {}
    check(e.get("run") in dq and e.get("tensor") in ("x.q", "act.q", "dout.q") and "layer" in e and "step" in e,
          f"underflow evidence {e}")
    check(abs(r["value"] - bad_uf) < 1e-12, f"underflow value {r['value']} != {bad_uf}")
    # Loss divergence fails, value = the constructed bias.
    r = result(j, "loss_rel_error", "fp8_blockwise")
    check(r["status"] == "fail" and v.get("fp8_blockwise") == "fail", f"loss bias {bad_loss} %: {r['status']}")
    check(r["value"] is not None and abs(r["value"] - bad_loss) < 1e-9, f"loss value {r['value']} != {bad_loss}")
    check(len(r["evidence"]) == 3 and all(x.get("seed") in seeds for x in r["evidence"]), "one evidence row per seed")
    # One bad expert fails wgrad_sqnr_expert, and the evidence names it.
    r = result(j, "wgrad_sqnr_expert", "fp8_flow(exact)")
    e = r["evidence"][0] if r["evidence"] else {}
    check(r["status"] == "fail" and (e.get("layer"), e.get("tensor"), e.get("expert")) == (1, "dw2", 3),
          f"bad expert: {r['status']} {e}")
    check(v.get("fp8_flow(exact)") == "fail", "bad expert fails the dataflow")
    # No moe/transpose runs in this file: those rules are n/a, never ok.
    for rid in ("moe_output_sqnr", "moe_sqnr_drop", "moe_cast_underflow", "transpose_extra_noise", "transpose_extra_underflow"):
        for df in j["dataflows"]:
            r = result(j, rid, df)
            check(r["status"] == "n/a" and r["message"], f"{rid}/{df} without data must be n/a with a reason")

    # The interval decides (issue 23): mean 0.2 % < 0.25 %, but the 95% CI over 3 seeds reaches 0.25 %: inconclusive,
    # never pass, with the seeds that would decide: t_{n-1} * 0.2 / sqrt(n) < 0.05 needs n > (1.96 * 4)^2 = 61.5
    # (t > z), and t_{n-1} < 2.0 once n > 60 (t_60 = 2.0003), so n lies in 62..66.
    runs = []
    for s, b in zip(seeds, (0.0, 0.2, 0.4)):
        runs += [train_run("bf16", s, **g), train_run("fp8_flow", s, **g, loss_bias=b)]
    j = report_json(write_store(path("ci.h5"), runs))
    r = result(j, "loss_rel_error", "fp8_flow(paper_kernel)")
    half = 4.302653 * 0.2 / math.sqrt(3)  # t_0.975,2 = 4.302653 * sd / sqrt(n); sd of (0, .2, .4) = 0.2
    check(r["status"] == "inconclusive", f"CI reaching 0.25%: {r['status']} ({r['message']})")
    check(abs(r["value"] - 0.2) < 1e-9, f"CI case mean {r['value']}")
    check(f"{0.2 + half:.4g}" in r["message"] and f"{0.2 - half:.4g}" in r["message"], f"CI bounds in '{r['message']}'")
    check(abs(r["ci_high"] - (0.2 + half)) < 1e-3 and abs(r["ci_low"] - (0.2 - half)) < 1e-3, f"CI in the JSON {r}")
    check(r["seeds"] == 3 and r["reference"] == "bf16", f"seeds and reference in the JSON {r}")
    check(r["seeds_to_decide"] is not None and 62 <= r["seeds_to_decide"] <= 66,
          f"seeds to decide {r['seeds_to_decide']} (expected 62..66)")
    check(str(r["seeds_to_decide"]) in r["message"], f"the message names the seeds to decide: {r['message']}")
    check(j["verdicts"]["fp8_flow(paper_kernel)"] == "inconclusive", "inconclusive loss makes the verdict inconclusive")
    # The same interval entirely outside the criterion fails; entirely inside passes.
    for biases, want in (((0.5, 0.6, 0.7), "fail"), ((-0.7, -0.6, -0.5), "fail"), ((0.05, 0.06, 0.07), "pass")):
        runs = []
        for s, b in zip(seeds, biases):
            runs += [train_run("bf16", s, **g), train_run("fp8_flow", s, **g, loss_bias=b)]
        j = report_json(write_store(path("decide.h5"), runs))
        r = result(j, "loss_rel_error", "fp8_flow(paper_kernel)")
        check(r["status"] == want and r["seeds_to_decide"] is None, f"biases {biases}: {r['status']}, want {want}")
    # Less evidence is never greener: one seed with a tiny error is inconclusive, not pass.
    j = report_json(write_store(path("one.h5"), [train_run("bf16", 1, **g), train_run("fp8_flow", 1, **g, loss_bias=0.001)]))
    r = result(j, "loss_rel_error", "fp8_flow(paper_kernel)")
    check(r["status"] == "inconclusive" and r["seeds"] == 1 and r["ci_low"] is None, f"one seed: {r}")
    # The bf16 row is measured against fp64 and says so.
    runs = []
    for s in seeds:
        runs += [train_run("fp64", s, **g), train_run("bf16", s, **g, loss_bias=0.01 * s)]
    j = report_json(write_store(path("bf16.h5"), runs))
    r = result(j, "loss_rel_error", "bf16")
    check(r["status"] == "pass" and r["reference"] == "fp64" and "vs fp64" in r["message"], f"bf16 vs fp64: {r}")

    # A NaN loss: non-finite step fails, and the final loss (NaN) fails the loss rule.
    runs = [train_run("bf16", 1, **g), train_run("fp8_flow", 1, **g, nan_last=True)]
    j = report_json(write_store(path("nan.h5"), runs))
    check(result(j, "loss_nonfinite", "fp8_flow(paper_kernel)")["status"] == "fail", "NaN loss -> loss_nonfinite fail")
    check(result(j, "loss_rel_error", "fp8_flow(paper_kernel)")["status"] == "fail", "NaN final loss -> loss_rel_error fail")


def test_missing_data():
    R = catalog()
    # fp8 runs whose casts table has zero rows, no bf16 partner for seed 2, a single layer (no depth growth).
    runs = [train_run("bf16", 1), train_run("fp8_flow", 1, casts=False), train_run("fp8_blockwise", 2, layers=1)]
    j = report_json(write_store(path("missing.h5"), runs))
    for rid in ("cast_underflow", "cast_saturation", "scale_oscillation"):
        r = result(j, rid, "fp8_flow(paper_kernel)")
        check(r["status"] == "n/a" and r["message"], f"{rid} with an empty casts table: {r['status']} '{r['message']}'")
        check(result(j, rid, "bf16")["status"] == "n/a", f"{rid} for bf16 (no FP8 casts) must be n/a")
    r = result(j, "loss_rel_error", "fp8_blockwise")
    check(r["status"] == "n/a" and "bf16" in r["message"], f"no paired bf16 seed: {r['status']} '{r['message']}'")
    check(result(j, "router_load_shift", "fp8_blockwise")["status"] == "n/a", "router without a pair: n/a")
    check(result(j, "depth_error_growth", "fp8_blockwise")["status"] == "n/a", "one layer: no depth growth, n/a")
    check(result(j, "loss_rel_error", "bf16")["status"] == "n/a", "bf16 without fp64 runs: n/a")
    check(j["verdicts"]["bf16"] in ("pass", "n/a"), "bf16 verdict")
    # A verdict is never made of n/a alone into ok.
    for df, verdict in j["verdicts"].items():
        graded = [r["status"] for r in j["results"] if r["dataflow"] == df and r["status"] != "n/a"]
        check(verdict == (max(graded, key=["pass", "warn", "inconclusive", "fail"].index) if graded else "n/a"), f"verdict of {df}")


def moe_run(df, sqnr_out, *, underflow=0, n=1000, transpose="paper_kernel"):
    rows = [("x", "bf16", 55.0, 0), ("x.q", "fp8", 31.5, underflow), ("dy.q", "fp8", 31.4, 0)]
    rows += [(t, "bf16", sqnr_out, 0) for t in ("y", "dx", "dw1", "dw2", "dwr")]
    if not df.startswith("fp8"):
        rows = [r for r in rows if r[1] != "fp8"]
    cols = [("dataflow", "", [df] * len(rows)), ("tensor", "", [r[0] for r in rows]), ("golden", "", [r[0] for r in rows]),
            ("prec", "", [r[1] for r in rows]), ("n", "count", [n] * len(rows)), ("sqnr_db", "dB", [r[2] for r in rows]),
            ("rel_err", "1", [10 ** (-r[2] / 20) for r in rows]), ("underflow_to_zero", "count", [r[3] for r in rows]),
            ("saturated", "count", [0] * len(rows))]
    return {"kind": "moe_dataflows", "params": {"preset": "tiny", "dataflow": df, "transpose": transpose, "seed": 1},
            "tables": {"metrics": cols}}


def transpose_run(dist, sq, uf, n=100000):
    """sq, uf: {method: sqnr_db vs input, underflow count}."""
    ms = list(sq)
    cols = [("method", "", ms), ("reference", "", ["input"] * len(ms)), ("n", "count", [n] * len(ms)),
            ("sqnr_db", "dB", [sq[m] for m in ms]), ("underflow_to_zero", "count", [uf[m] for m in ms])]
    return {"kind": "transpose_study", "params": {"distribution": dist, "shape": [256, 256], "seed": 1},
            "tables": {"metrics": cols, "paper_vs_exact": [("count", "count", [])]}}


def test_moe_transpose():
    R = catalog()
    ok_db, bad_db = good(R["moe_output_sqnr"]), bad(R["moe_output_sqnr"])
    runs = [moe_run("fp64", 1e9), moe_run("bf16", 40.0), moe_run("fp8_flow", ok_db),
            moe_run("fp8_double_quant", bad_db, underflow=int(1000 * bad(R["moe_cast_underflow"])))]
    # Transpose study: naive loses 3 dB against direct (noise x2: +100 %), paper_kernel zeroes 5 % more elements.
    runs.append(transpose_run("normal", {"naive": 28.5, "paper_kernel": 31.5, "exact": 31.5, "direct": 31.5},
                              {"naive": 0, "paper_kernel": 5000, "exact": 0, "direct": 0}))
    j = report_json(write_store(path("moe.h5"), runs))
    check(result(j, "moe_output_sqnr", "fp8_flow(paper_kernel)")["status"] == "pass", "good moe output SQNR ok")
    r = result(j, "moe_output_sqnr", "fp8_double_quant")
    check(r["status"] == "fail" and abs(r["value"] - bad_db) < 1e-9, f"bad moe SQNR {bad_db}: {r['status']} {r['value']}")
    check(result(j, "moe_cast_underflow", "fp8_double_quant")["status"] == "fail", "moe underflow fail")
    check(result(j, "moe_cast_underflow", "fp8_flow(paper_kernel)")["status"] == "pass", "moe: no underflow is ok")
    check(result(j, "cast_underflow", "fp8_flow(paper_kernel)")["status"] == "n/a", "no train casts: n/a")
    check(result(j, "moe_sqnr_drop", "bf16")["status"] == "n/a", "bf16 has no FP8 entry cast: n/a")
    check(result(j, "moe_output_sqnr", "fp64")["status"] == "n/a", "fp64 is the golden layer: n/a")
    r = result(j, "moe_sqnr_drop", "fp8_flow(paper_kernel)")
    check(r["value"] is not None and abs(r["value"] - (31.5 - ok_db)) < 1e-9, f"SQNR drop {r['value']}")
    r = result(j, "transpose_extra_noise", "fp8_double_quant")
    check(r["status"] == "fail" and abs(r["value"] - 100 * (10 ** 0.3 - 1)) < 1e-6, f"naive +3 dB: {r['status']} {r['value']}")
    r = result(j, "transpose_extra_underflow", "fp8_flow(paper_kernel)")
    check(abs(r["value"] - 0.05) < 1e-12 and r["status"] == (
        "fail" if 0.05 >= R["transpose_extra_underflow"]["fail"] else "warn" if 0.05 >= R["transpose_extra_underflow"]["warn"] else "pass"),
        f"paper_kernel +5% underflow: {r['status']} {r['value']}")
    check(result(j, "transpose_extra_noise", "fp8_flow(paper_kernel)")["status"] == "pass", "paper_kernel noise ok")
    check(result(j, "transpose_extra_noise", "bf16")["status"] == "n/a", "bf16 makes no column copy")
    check(result(j, "loss_rel_error", "fp8_flow(paper_kernel)")["status"] == "n/a", "no train runs: loss n/a")
    check(j["verdicts"]["fp8_flow(paper_kernel)"] != "pass", "the underflow tail is graded into the fp8_flow verdict")


def test_errors():
    def fails(args, needle, env=None):
        p = subprocess.run([BIN, "report"] + args, capture_output=True, text=True, env=env)
        check(p.returncode == 1 and needle in p.stderr, f"report {args}: exit {p.returncode}, stderr {p.stderr!r}, want '{needle}'")
    fails([path("nope.h5"), "--json"], "no such file")
    with open(path("text.h5"), "w") as f:
        f.write("not hdf5\n")
    fails([path("text.h5"), "--json"], "not an HDF5 file")
    with h5py.File(path("plain.h5"), "w") as f:
        f["x"] = [1, 2]
    fails([path("plain.h5"), "--json"], "not an fp8flow results store")
    write_store(path("empty.h5"), [])
    fails([path("empty.h5"), "--json"], "no runs")
    fails([path("empty.h5"), "-o", path("e.html")], "no runs")
    check(not os.path.exists(path("e.html")), "no HTML for a bad store")
    # A table the schema promises without a column: the error names run, table and column.
    r = train_run("fp8_flow", 1)
    r["tables"]["casts"] = [c for c in r["tables"]["casts"] if c[0] != "underflow_frac"]
    write_store(path("badcol.h5"), [r])
    fails([path("badcol.h5"), "--json"], "table 'casts' has no column 'underflow_frac'")
    # Without Python: a clear error for the HTML, --json still works; an existing report stays untouched.
    store = write_store(path("ok.h5"), [train_run("bf16", 1), train_run("fp8_flow", 1)])
    with open(path("keep.html"), "w") as f:
        f.write("old")
    env = dict(os.environ, FP8FLOW_PYTHON=path("no-python"))
    fails([store, "-o", path("keep.html")], "FP8FLOW_PYTHON", env=env)
    check(open(path("keep.html")).read() == "old", "failed report leaves the old file")
    check(not [x for x in os.listdir(TMP) if ".partial" in x or ".data-" in x], f"no temporaries left: {os.listdir(TMP)}")
    report_json(store, env=env)
    p = subprocess.run([BIN, "report"], capture_output=True, text=True)
    check(p.returncode == 2, "missing argument is a usage error (2)")
    # --fail-on: exit 3 when a verdict is at the level or worse (pass < warn < inconclusive < fail), after the output.
    one = write_store(path("gate.h5"), [train_run("bf16", 1), train_run("fp8_flow", 1)])  # one seed: inconclusive
    for level, rc in (("fail", 0), ("inconclusive", 3), ("warn", 3)):
        p = subprocess.run([BIN, "report", one, "--json", "--fail-on", level], capture_output=True, text=True)
        check(p.returncode == rc, f"--fail-on {level} on an inconclusive verdict: exit {p.returncode}, want {rc}")
        check(p.stdout.startswith("{") and json.loads(p.stdout)["verdicts"], "the JSON is printed before the exit")
        if rc:
            check("fp8_flow(paper_kernel) inconclusive" in p.stderr, f"--fail-on names the verdict: {p.stderr!r}")
    p = subprocess.run([BIN, "report", one, "--json", "--fail-on", "ok"], capture_output=True, text=True)
    check(p.returncode == 2 and "--fail-on" in p.stderr, f"--fail-on ok is a usage error: {p.returncode} {p.stderr!r}")


# ---- HTML -----------------------------------------------------------------------------------------
def full_store():
    runs = []
    for s in (1, 2):
        runs += [train_run("bf16", s), train_run("fp8_flow", s, loss_bias=0.05), train_run("fp8_double_quant", s, underflow=0.2),
                 train_run("fp8_flow", s, transpose="exact", bad_expert=(0, "dw1", 2, 5.0))]
    runs += [moe_run("bf16", 40.0), moe_run("fp8_flow", 23.0), moe_run("fp8_double_quant", 22.0)]
    runs.append(transpose_run("normal", {"naive": 31.4, "paper_kernel": 31.5, "exact": 31.5, "direct": 31.5},
                              {"naive": 0, "paper_kernel": 30, "exact": 2, "direct": 2}))
    return write_store(path("full.h5"), runs), runs


def check_html(html_file, runs, min_plots=4):
    text = open(html_file, encoding="utf-8").read()
    import re
    check("<script" not in text.lower(), "no scripts")
    ext = re.findall(r'(?:src|href)\s*=\s*["\'](?!#|data:)([^"\']+)', text)
    check(not ext, f"self-contained: external references {ext[:5]}")
    ids = set(re.findall(r'id=["\']([^"\']+)', text))
    links = set(re.findall(r'href=["\']#([^"\']+)', text))
    check(not (links - ids), f"every link has its anchor: missing {sorted(links - ids)[:5]}")
    for r in runs:
        check(f"id='run-{r['hash']}'" in text, f"provenance row for run {r['hash']}")
    check(text.count("data:image/png;base64,") >= min_plots, f"at least {min_plots} plots embedded")
    return text


def chromium():
    for b in ("chromium-headless-shell", "chromium", "chromium-browser"):
        p = shutil.which(b) or (f"/usr/bin/{b}" if os.path.exists(f"/usr/bin/{b}") else None)
        if p:
            return p
    return None


def render(browser, html_file, png):
    """Loads the page headless; returns the console/load errors Chromium logged and writes a screenshot."""
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
            "--v=0", f"--user-data-dir={path('chrome-profile')}", "--window-size=1280,2400",
            f"--screenshot={png}", "file://" + os.path.abspath(html_file)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    # The page has no script, so any console message at all (console.error logs as INFO:CONSOLE) is an error;
    # load failures of external resources are excluded statically by check_html (nothing but data: URIs).
    errors = [l for l in p.stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l or "net::ERR_" in l]
    return p.returncode, errors


def nonblank(png):
    from PIL import Image
    im = np.asarray(Image.open(png).convert("RGB")).astype(int)
    non_white = float(np.mean(np.any(im < 235, axis=2)))
    colors = len(np.unique(im.reshape(-1, 3)[:: 97], axis=0))
    return non_white, colors


def test_html():
    store, runs = full_store()
    out = path("out/report.html")
    p = subprocess.run([BIN, "report", store, "-o", out], capture_output=True, text=True)
    check(p.returncode == 0, f"report -o: exit {p.returncode}: {p.stderr}")
    check(f"wrote {out}" in p.stdout, f"prints the path: {p.stdout}")
    if p.returncode != 0:
        return
    text = check_html(out, runs)
    for d in ("fp8_flow(paper_kernel)", "fp8_flow(exact)", "fp8_double_quant", "bf16"):
        check(d in text, f"dataflow {d} in the page")
    browser = chromium()
    if not browser:
        print("SKIP: no Chromium (apt-get install chromium-headless-shell; scripts/setup installs it): the page was "
              "checked for self-containment and anchors only")
        sys.exit(SKIP if not FAILURES else 1)
    # Negative control: the console check must see a console.error and an uncaught exception.
    with open(path("broken.html"), "w") as f:
        f.write("<html><body><p>x</p><script>console.error('boom'); undefined_fn();</script></body></html>")
    rc, errs = render(browser, path("broken.html"), path("broken.png"))
    check(len(errs) >= 2, f"the console check detects errors in a broken page (rc {rc}); else it proves nothing")
    rc, errs = render(browser, out, path("shot.png"))
    check(rc == 0 and os.path.exists(path("shot.png")), f"chromium exit {rc}")
    check(not errs, f"console errors: {errs[:5]}")
    if os.path.exists(path("shot.png")):
        frac, colors = nonblank(path("shot.png"))
        print(f"screenshot: {frac:.3f} of pixels non-white, {colors} distinct colours (sampled)")
        check(frac > 0.02 and colors > 20, "screenshot is not blank")
        # The negative control for blankness: an empty page must look blank to the same measure.
        with open(path("blank.html"), "w") as f:
            f.write("<html><body></body></html>")
        render(browser, path("blank.html"), path("blank.png"))
        bf, bc = nonblank(path("blank.png"))
        check(bf < 0.02 or bc <= 20, f"blank page measured blank ({bf}, {bc})")
    # Layout, measured by Chromium itself (issue 23): every image decoded, no text overflowing its box, and the
    # verdict table saying what the JSON says.
    j = report_json(store)
    lay = layout(browser, out)
    check(lay is not None, "layout probe ran (the page's DOM with the probe's result came back)")
    if lay is not None:
        check(lay["images"] >= 4 and not lay["broken_images"], f"images: {lay['images']}, broken {lay['broken_images']}")
        check(not lay["overflow"], f"text overflowing its box: {lay['overflow'][:5]}")
        check(lay["page_width"] <= lay["window_width"], f"page wider than the window: {lay['page_width']} > {lay['window_width']}")
        check(lay["verdicts"] == j["verdicts"], f"verdict table {lay['verdicts']} != JSON {j['verdicts']}")
    # The probe's negative controls: a broken image, a cell whose text overflows, a wrong verdict are all seen.
    bad = path("bad.html")
    with open(bad, "w") as f:
        f.write("<html><body><img src='data:image/png;base64,AAAA'><table id='verdict-table'><tr data-dataflow='bf16'>"
                "<td class='verdict'><span class='badge'>fail</span></td></tr></table>"
                "<div style='width:40px;overflow:hidden;white-space:nowrap'>an unbreakable_very_long_word_here</div>"
                "</body></html>")
    lay = layout(browser, bad)
    check(lay is not None and lay["broken_images"] and lay["overflow"] and lay["verdicts"] == {"bf16": "fail"},
          f"the layout probe detects a broken image, an overflow and reads the verdict table: {lay}")


# Runs in the page (Chromium evaluates it; the report itself has no script): what is measured, as JSON in <pre id=probe>.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40));
  const overflow = [];
  for (const el of document.querySelectorAll('td, th, p, h1, h2, h3, span, small, div, li, code, a')) {
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && getComputedStyle(el).display !== 'inline')
      overflow.push(el.tagName + ': ' + el.textContent.trim().slice(0, 60));
  }
  const verdicts = {};
  for (const tr of document.querySelectorAll('#verdict-table tr[data-dataflow]'))
    verdicts[tr.dataset.dataflow] = tr.querySelector('td.verdict .badge').textContent.trim();
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({images: imgs.length, broken_images: broken, overflow: overflow, verdicts: verdicts,
                                    page_width: document.documentElement.scrollWidth, window_width: window.innerWidth});
  document.body.appendChild(pre);
});
</script>"""


def layout(browser, html_file):
    """Loads a copy of the page with PROBE appended in headless Chromium and returns the probe's measurements."""
    import re
    probe = html_file + ".probe.html"
    with open(html_file, encoding="utf-8") as f:
        text = f.read()
    with open(probe, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE)
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={path('chrome-profile')}",
            "--window-size=1280,2400", "--virtual-time-budget=10000", "--dump-dom", "file://" + os.path.abspath(probe)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="probe">(.*?)</pre>', p.stdout, re.S)
    if not m:
        print("layout probe: no result;", p.returncode, p.stderr[-500:])
        return None
    import html as h
    return json.loads(h.unescape(m.group(1)))


# ---- A real store -----------------------------------------------------------------------------------
REAL = """
[experiment]
name = "report-real"
[[study]]
name = "sat"
kind = "transpose_study"
params = { shape = [256, 512], seed = 1 }
sweep = { distribution = ["normal", "outliers"] }
[[study]]
name = "moe"
kind = "moe_dataflows"
params = { preset = "tiny", transpose = "paper_kernel" }
sweep = { dataflow = ["fp64", "bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow"] }
"""


def test_real():
    exp = path("real.toml")
    with open(exp, "w") as f:
        f.write(REAL)
    store = path("real.h5")
    p = subprocess.run([BIN, "--quiet", "run", exp, "-o", store], capture_output=True, text=True)
    check(p.returncode == 0, f"fp8flow run: {p.stderr}")
    if p.returncode:
        return
    j = report_json(store)
    # Independent check of the graded numbers: read the same tables with h5py.
    with h5py.File(store, "r") as f:
        hashes = set(f["runs"].keys())
        mins, uf = {}, {}
        for h in hashes:
            g = f["runs"][h]
            if g.attrs["kind"] != "moe_dataflows":
                continue
            t = g["tables/metrics"]
            df = t["dataflow"].asstr()[()]
            tn, pr = t["tensor"].asstr()[()], t["prec"].asstr()[()]
            for i in range(len(tn)):
                d = "fp8_flow(paper_kernel)" if df[i] == "fp8_flow" else df[i]
                if tn[i] in ("y", "dx", "dw1", "dw2", "dwr"):
                    mins[d] = min(mins.get(d, math.inf), float(t["sqnr_db"][i]))
                if pr[i] == "fp8":
                    uf[d] = max(uf.get(d, 0.0), float(t["underflow_to_zero"][i]) / float(t["n"][i]))
    check(set(j["dataflows"]) == {"fp64", "bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow(paper_kernel)"},
          f"dataflows {j['dataflows']}")
    for d, m in mins.items():
        if d == "fp64":
            continue
        r = result(j, "moe_output_sqnr", d)
        check(r["value"] is not None and abs(r["value"] - m) < 1e-9, f"{d}: moe_output_sqnr {r['value']} vs h5py {m}")
    for d, u in uf.items():
        r = result(j, "moe_cast_underflow", d)
        check(r["value"] is not None and abs(r["value"] - u) < 1e-12, f"{d}: moe_cast_underflow {r['value']} vs h5py {u}")
    for r in j["results"]:
        for e in r["evidence"]:
            check(e["run"] in hashes, f"evidence run {e['run']} is in the file")
    for d in j["dataflows"]:
        check(j["verdicts"][d] in ("pass", "warn", "inconclusive", "fail", "n/a"), f"verdict of {d}")
    out = path("real.html")
    p = subprocess.run([BIN, "--quiet", "report", store, "-o", out], capture_output=True, text=True)
    check(p.returncode == 0, f"report html: {p.stderr}")
    if p.returncode == 0:
        with h5py.File(store, "r") as f:
            runs = [{"hash": h} for h in f["runs"]]
        check_html(out, runs, min_plots=2)  # no train runs: MoE attribution and transpose study


# ---- Controls (issue 23): recipes whose verdict is known must land there ------------------------------------
CONTROLS = """
[experiment]
name = "controls-test"
[[study]]
name = "moe"
kind = "moe_dataflows"
params = { preset = "tiny", transpose = "paper_kernel", seed = 1 }
sweep = { dataflow = ["fp64", "bf16", "fp8_blockwise", "fp8_blockwise_bf16_dispatch", "ctl_e5m2_fwd", "ctl_per_tensor_act"] }
"""


def test_controls():
    """The built-in controls (docs/risk.md "Controls and calibration") through the real simulator and rules, on one
    MoE layer (seconds). The loss rule's side of the controls needs tiny-preset training over several seeds
    (minutes): experiments/calibration.toml, measured in docs/risk.md."""
    exp = path("controls.toml")
    with open(exp, "w") as f:
        f.write(CONTROLS)
    store = path("controls.h5")
    p = subprocess.run([BIN, "--quiet", "run", exp, "-o", store], capture_output=True, text=True)
    check(p.returncode == 0, f"fp8flow run controls: {p.stderr}")
    if p.returncode:
        return
    j = report_json(store)
    v = j["verdicts"]
    check(v.get("ctl_e5m2_fwd") == "fail", f"negative control ctl_e5m2_fwd: verdict {v.get('ctl_e5m2_fwd')}, must be fail")
    r = result(j, "moe_output_sqnr", "ctl_e5m2_fwd")
    check(r["status"] == "fail", f"E5M2 forward fails the layer SQNR: {r['status']} {r['value']}")
    for good in ("bf16", "fp8_blockwise", "fp8_blockwise_bf16_dispatch"):
        check(v.get(good) in ("pass", "warn"), f"positive control {good}: verdict {v.get(good)}, must not fail")
    # The bf16-dispatch floor equals the paper's baseline to within the DQ->Q of power-of-two scales, and the
    # JSON says how each of their copies is made.
    a, b = result(j, "moe_output_sqnr", "fp8_blockwise"), result(j, "moe_output_sqnr", "fp8_blockwise_bf16_dispatch")
    check(abs(a["value"] - b["value"]) < 0.05, f"blockwise {a['value']} vs bf16 dispatch {b['value']} dB")
    o = {x["tensor"]: x["origin"] for x in j["copy_origins"].get("fp8_blockwise", [])}
    check(o.get("xp.col") == "dq_q" and o.get("act.col") == "direct", f"fp8_blockwise copy origins {o}")
    o = {x["tensor"]: x["origin"] for x in j["copy_origins"].get("fp8_blockwise_bf16_dispatch", [])}
    check(o and set(o.values()) == {"direct"}, f"bf16-dispatch copy origins {o}")
    # ctl_per_tensor_act is a known miss of the layer rules (docs/risk.md: the router gradient's noise sets the
    # worst SQNR of every FP8 dataflow); its forward output y is still measurably worse than the baseline's.
    def y_sqnr(df):
        ev = [e for e in result(j, "moe_output_sqnr", df)["evidence"] if e.get("tensor") == "y"]
        return ev[0]["value"] if ev else None
    yp, yb = y_sqnr("ctl_per_tensor_act"), y_sqnr("fp8_blockwise")
    check(yp is not None and yb is not None and yp < yb - 0.2, f"per-tensor activations: y {yp} dB vs blockwise {yb} dB")


def main():
    if not os.access(BIN, os.X_OK):
        print(f"FAIL: no fp8flow binary at {BIN}")
        return 1
    {"verdicts": test_verdicts, "missing_data": test_missing_data, "moe_transpose": test_moe_transpose,
     "errors": test_errors, "html": test_html, "real": test_real, "controls": test_controls}[GROUP]()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s); files kept in {TMP}")
        return 1
    shutil.rmtree(TMP, ignore_errors=True)
    print(f"report.{GROUP}: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
