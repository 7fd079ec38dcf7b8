#!/usr/bin/env python3
"""Summarise recorded cuBLASLt accumulation probes (fp8flow gemm-probes --gpu -o DIR) for fitting the
hopper_fast model: prints the structured probes' outputs next to their exact values. Usage:
  .venv/bin/python scripts/dev/gemm_probe_summary.py DIR"""
import json
import sys

import numpy as np

d = sys.argv[1]
idx = json.load(open(f"{d}/gemm_probes.json"))
bits = np.load(f"{d}/gemm_probes_out.npy")
print("gpu", idx["gpu"], "cublasLt", idx["cublasLt_version"], "layouts", idx["vec128_layout"], idx["blk128_layout"])
print(json.dumps(idx["layout_check"])[:2000])


def out(r):
    o = bits[r["offset"]:r["offset"] + r["count"]]
    if r["out"] == "bf16":
        o = (o.astype(np.uint32) << 16)
    return o.astype(np.uint32).view(np.float32).reshape(r["m"], r["n"])


runs = [r for r in idx["runs"] if "error" not in r]
for r in idx["runs"]:
    if "error" in r:
        print("ERROR", r["case"], r["scaling"], r["fast_accum"], r["out"], r["error"][:200])
sel = lambda c: [r for r in runs if r["case"] == c and r["out"] == "f32"]
for r in runs:
    if r["case"] in ("rand_normal_k256",):
        print("algo", r["scaling"], r["fast_accum"], r["out"], r["algo"])
K = 65536
print("\n== ones_stall (col 0): n_i -> output")
ns = [min(K, int(round(16.0 * 2 ** (i * 12.0 / 31.0)))) for i in range(32)]
for r in sel("ones_stall"):
    o = out(r)[:, 0]
    print(r["scaling"], "fast", int(r["fast_accum"]), " ".join(f"{n}:{v:g}" for n, v in zip(ns, o) if v != n) or "all exact")
print("\n== paper_probe (exact 8704)")
for r in sel("paper_probe"):
    print(r["scaling"], "fast", int(r["fast_accum"]), np.unique(out(r)))
print("\n== alt_small col0: (e, len) out / exact")
for r in sel("alt_small"):
    o = out(r)[:, 0]
    s = []
    for i in range(32):
        e = 1 + i % 9
        ln = 4096 << (2 * (i // 9))
        if i >= 27:
            e, ln = 4, min(K, 1024 << ((i - 27) * 2))
        ln = min(ln, K)
        ex = ln / 2 * (1 + 2.0 ** -e)
        if o[i] != ex:
            s.append(f"e{e}/len{ln}:{o[i]:.8g}/{ex:g}")
    print(r["scaling"], "fast", int(r["fast_accum"]), " ".join(s) or "all exact")
for case, pos in (("spread_first", 0), ("spread_last", 1023), ("spread_mid", 517)):
    print(f"\n== {case} col0: row (a, t): out - L vs exact (K-1) t")
    rows = []
    for a in (0, 8):
        for j in range(10):
            rows.append((a, 2.0 ** -j))
    for a in (0, 8):
        for j in range(1, 7):
            for m in (1.125, 1.375, 1.875):
                rows.append((a, m * 2.0 ** -j))
    for j in range(1, 9):
        rows.append((8, -2.0 ** -j))
    for r in sel(case):
        o = out(r)[:, 0].astype(np.float64)
        s = []
        for i, (a, t) in enumerate(rows):
            L = 2.0 ** a * 256
            ex = L + 1023 * t
            if o[i] != np.float32(ex):
                s.append(f"[a{a} t{t:g}] {o[i] - L:.8g}/{1023 * t:g}")
        print(r["scaling"], "fast", int(r["fast_accum"]), "\n   ".join(s) or "all exact")
print("\n== group_scan: per pair, q where the output is not s (lost or partial), col 0")
for r in sel("group_scan"):
    o = out(r)[:, 0]
    print(r["scaling"], "fast", int(r["fast_accum"]))
    for pair, p1 in enumerate((641, 647, 655, 671)):
        blk = o[pair * 1024:(pair + 1) * 1024]
        bad = [q for q in range(1024) if q not in (640, p1) and blk[q] != np.float32(2.0 ** -9)]
        # compress into ranges
        rg = []
        for q in bad:
            if rg and q == rg[-1][1] + 1:
                rg[-1][1] = q
            else:
                rg.append([q, q])
        vals = sorted(set(float(blk[q]) for q in bad))[:6]
        print(f"  p1={p1}: lost at {[(a, b) for a, b in rg]} values {vals}")
print("\n== mantissa_sum col0: (v, len) out / exact")
vals = [1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875, 0.875]
for r in sel("mantissa_sum"):
    o = out(r)[:, 0]
    s = []
    for i in range(32):
        ln = 64 << (2 * (i // 8))
        ex = ln * vals[i % 8]
        if o[i] != ex:
            s.append(f"{vals[i % 8]}x{ln}:{o[i]:.8g}/{ex:g}")
    print(r["scaling"], "fast", int(r["fast_accum"]), " ".join(s) or "all exact")
