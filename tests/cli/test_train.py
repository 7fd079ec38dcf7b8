#!/usr/bin/env python3
"""End-to-end tests of `fp8flow train` (docs/training.md), the store read back with plain h5py.

usage: test_train.py FP8FLOW GROUP   (GROUP: train_errors, train_end_to_end)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import h5py

SCHEMA = {
    "steps": ["step", "loss", "lr", "grad_norm"],
    "grad_error": ["step", "layer", "tensor", "expert", "sqnr_db", "rel_err"],
    "layer_error": ["step", "layer", "tensor", "sqnr_db", "rel_err"],
    "casts": ["step", "layer", "tensor", "n", "underflow_frac", "saturation_frac", "scale_log2_min",
              "scale_log2_max", "scale_log2_mean"],
    "router": ["step", "layer", "expert", "load"],
}


def run(exe, *args, cwd=None):
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=280)


def train_errors(exe):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "t.h5")
        cases = [  # options: exit 2; files: exit 1
            (["--preset", "huge"], "huge", 2),
            (["--dataflow", "fp7"], "fp7", 2),
            (["--steps", "0"], "--steps 0", 2),
            (["--steps", "-3"], "--steps -3", 2),
            (["--seeds", "0"], "--seeds 0", 2),
            (["--transpose", "sideways"], "sideways", 2),
            (["--corpus", os.path.join(d, "missing.txt")], "missing.txt", 1),
        ]
        for args, needle, code in cases:
            p = run(exe, "train", "-o", out, *args)
            assert p.returncode == code, (args, p.returncode, p.stderr)
            assert needle in p.stderr, (args, p.stderr)
            assert not os.path.exists(out), args  # nothing written on bad input
    print("train_errors: OK")


def train_end_to_end(exe):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "t.h5")
        args = ["train", "--preset", "quickstart", "--dataflow", "fp8_flow", "--seeds", "2", "--steps", "4",
                "-o", out, "--json"]
        p = run(exe, "--threads", "2", *args)
        assert p.returncode == 0, p.stderr
        j = json.loads(p.stdout)
        variants = [v["variant"] for v in j["variants"]]
        assert variants == ["bf16", "fp8_flow(paper_kernel)", "fp8_flow(exact)"], variants
        for v in j["variants"]:
            assert v["seeds"] == [1, 2]
            if v["variant"] != "bf16":
                r = v["rel_loss_error"]
                assert r["reference"] == "bf16" and r["n"] == 2 and r["ci_low"] <= r["mean"] <= r["ci_high"], r
                assert r["decision"] in ("pass", "fail", "inconclusive"), r
        with h5py.File(out, "r") as f:
            runs = f["runs"]
            assert len(runs) == 6, list(runs)
            losses = {}
            for h in runs:
                g = runs[h]
                assert g.attrs["kind"] == "train"
                params = json.loads(g.attrs["params_json"])
                for k in ["preset", "dataflow", "transpose", "seed", "steps", "layers", "experts", "lr"]:
                    assert k in params, k
                assert params["steps"] == 4
                label = g.attrs["label"]
                expect = params["dataflow"] + (f"({params['transpose']})" if params["dataflow"] == "fp8_flow" else "")
                assert label == f"{expect} seed={params['seed']}", label
                for t, cols in SCHEMA.items():
                    tg = g["tables"][t]
                    assert sorted(tg.keys()) == sorted(cols), (t, list(tg.keys()))
                    assert [c.decode() if isinstance(c, bytes) else c for c in tg.attrs["columns"]] == cols
                loss = g["tables/steps/loss"][()]
                assert len(loss) == 4 and all(math.isfinite(x) for x in loss)
                # final_loss = mean over the last 10% of steps (at least one): the last step here.
                assert g.attrs["final_loss"] == loss[-1], (g.attrs["final_loss"], loss)
                if params["dataflow"] == "bf16":
                    assert len(g["tables/casts/step"]) == 0
                else:
                    uf = g["tables/casts/underflow_frac"][()]
                    assert len(uf) > 0 and all(0 <= x <= 1 for x in uf)
                losses[(params["dataflow"], params["transpose"], params["seed"])] = g.attrs["final_loss"]
            # Paired by seed: the same seed's runs start from the same weights and batches (step 0 loss equal
            # up to the dataflow's forward error), so the first-step losses are close.
        # Same command again: refused without --resume, nothing to do with it.
        p = run(exe, *args)
        assert p.returncode == 1 and "--resume" in p.stderr, p.stderr
        p = run(exe, *args, "--resume")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["variants"] == j["variants"]
        # --threads does not change a run: the same runs with one thread into another file.
        out1 = os.path.join(d, "t1.h5")
        p = run(exe, "--threads", "1", *[a if a != out else out1 for a in args])
        assert p.returncode == 0, p.stderr
        with h5py.File(out, "r") as a, h5py.File(out1, "r") as b:
            assert sorted(a["runs"]) == sorted(b["runs"])
            for h in a["runs"]:
                for t, cols in SCHEMA.items():
                    for c in cols:
                        x, y = a["runs"][h]["tables"][t][c][()], b["runs"][h]["tables"][t][c][()]
                        assert len(x) == len(y) and all((u == v) or (u != u and v != v) for u, v in zip(x, y)), (h, t, c)
    print("train_end_to_end: OK")


if __name__ == "__main__":
    exe, group = sys.argv[1], sys.argv[2]
    {"train_errors": train_errors, "train_end_to_end": train_end_to_end}[group](exe)
