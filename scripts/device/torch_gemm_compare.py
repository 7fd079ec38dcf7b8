#!/usr/bin/env python3
"""Runs torch._scaled_mm on the operands `fp8flow gemm-algos --gpu --record SET --dump DIR` wrote and compares
its outputs bit for bit with those our cuBLASLt runner produced (CublasGemmConfig::torch_heuristic): equal
outputs show that both ran the same algorithm (docs/gemm.md "Algorithms").
Usage (device machine): python3 scripts/device/torch_gemm_compare.py DUMP_DIR OUT.json"""
import ctypes
import json
import os
import sys

import numpy as np
import torch


def cublaslt_version():
    for name in ("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"):
        try:
            return int(ctypes.CDLL(name).cublasLtGetVersion())
        except OSError:
            continue
    return None


def loaded_cublaslt():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "libcublasLt" in line})


def scales(scaling, sa, sb, m, n, k, dev):
    kb = (k + 127) // 128
    if scaling == "tensor":
        return (torch.tensor(float(sa[0]), dtype=torch.float32, device=dev),
                torch.tensor(float(sb[0]), dtype=torch.float32, device=dev))
    # 1x128 activations: [M, KB] outer-dim-major (stride (1, M)).
    a = torch.from_numpy(sa.reshape(m, kb)).to(dev).t().contiguous().t()
    if scaling == "1x128_1x128":
        b = torch.from_numpy(sb.reshape(n, kb)).to(dev).t().contiguous()  # [KB, N] for mat_b = B^T [K, N]
        return a, b
    nb = (n + 127) // 128
    l4 = (kb + 3) // 4 * 4
    w = torch.zeros(nb, l4, device=dev)
    w[:, :kb] = torch.from_numpy(sb.reshape(nb, kb)).to(dev)
    return a, w.t()[:kb]


def main():
    dump, out = sys.argv[1], sys.argv[2]
    dev = "cuda"
    torch.zeros(1, device=dev)
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "runs": []}
    tot = eq = 0
    for cdir in sorted(os.listdir(dump)):
        p = os.path.join(dump, cdir)
        meta = json.load(open(os.path.join(p, "meta.json")))
        m, n, k, sc = meta["m"], meta["n"], meta["k"], meta["scaling"]
        a = torch.from_numpy(np.load(os.path.join(p, "a.npy"))).to(dev).view(torch.float8_e4m3fn)
        b = torch.from_numpy(np.load(os.path.join(p, "b.npy"))).to(dev).view(torch.float8_e4m3fn)
        rows = np.load(os.path.join(p, "rows.npy")).astype(np.int64)
        cols = np.load(os.path.join(p, "cols.npy")).astype(np.int64)
        sa, sb = scales(sc, np.load(os.path.join(p, "sa.npy")), np.load(os.path.join(p, "sb.npy")), m, n, k, dev)
        for fast in (0, 1):
            for od in ("f32", "bf16"):
                fn = os.path.join(p, f"out_f{fast}_{od}.npy")
                if not os.path.exists(fn):
                    continue
                ours = np.load(fn)  # uint32: the sampled outputs [rows, cols] (bf16 bits in the low half)
                if od == "bf16":
                    ours = ours.astype(np.uint16)
                row = {"case": meta["name"], "fast_accum": fast, "out": od}
                try:
                    t = torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb,
                                         out_dtype=torch.float32 if od == "f32" else torch.bfloat16,
                                         use_fast_accum=bool(fast))
                    torch.cuda.synchronize()
                    tb = (t.view(torch.int32) if od == "f32" else t.view(torch.int16)).cpu().numpy()
                    tb = tb.view(np.uint32 if od == "f32" else np.uint16)[np.ix_(rows, cols)]
                    same = tb == ours
                    # NaN: any NaN pattern counts as equal (payloads are not modelled).
                    if od == "f32":
                        tf, of = tb.view(np.float32), ours.view(np.float32)
                    else:
                        tf = (tb.astype(np.uint32) << 16).view(np.float32)
                        of = (ours.astype(np.uint32) << 16).view(np.float32)
                    same |= np.isnan(tf) & np.isnan(of)
                    row["equal"] = int(same.sum())
                    row["count"] = int(same.size)
                    if not same.all():
                        i = int(np.flatnonzero(~same.ravel())[0])
                        row["first_mismatch"] = f"[{rows[i // len(cols)]}, {cols[i % len(cols)]}] torch {int(tb.ravel()[i]):#x} ours {int(ours.ravel()[i]):#x}"
                    tot += row["count"]
                    eq += row["equal"]
                except Exception as e:  # noqa: BLE001 - record what torch refuses
                    row["error"] = str(e)[:300]
                res["runs"].append(row)
        for f in os.listdir(p):
            os.remove(os.path.join(p, f))
        os.rmdir(p)
    res["cublasLt_version"] = cublaslt_version()
    res["cublasLt_loaded"] = loaded_cublaslt()
    res["equal"], res["count"] = eq, tot
    refused = sum(1 for r in res["runs"] if "error" in r)
    differ = sum(1 for r in res["runs"] if "error" not in r and r["equal"] != r["count"])
    res["runs_refused"], res["runs_differ"] = refused, differ
    json.dump(res, open(out, "w"), indent=1)
    print(f"torch._scaled_mm vs our cuBLASLt runner: {eq} of {tot} outputs equal; {differ} runs differ, "
          f"{refused} refused by torch; torch cuBLASLt {res['cublasLt_version']} {res['cublasLt_loaded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
