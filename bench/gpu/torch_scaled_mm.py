#!/usr/bin/env python3
"""torch._scaled_mm FP8 e4m3 GEMM throughput on this GPU, the yardstick of fp8flow-gemm-bench (issue 8:
cuBLASLt blockwise >= 90% of torch with the same scaling). Same problem: out[M,N] = a[M,K] . w[N,K]^T,
bf16 output, CUDA events, median of --reps single calls after warm-up. Scalings: tensorwise (fast accumulation
on and off), blockwise 1x128 x 128x128 and 1x128 x 1x128 where this torch supports them (else says why).
Usage (device machine): python3 bench/gpu/torch_scaled_mm.py [--shape 8192,8192,8192] [--reps 30]"""
import argparse
import json
import sys

import torch


def timed(fn, reps):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8192,8192,8192")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    M, N, K = (int(x) for x in args.shape.split(","))
    dev = "cuda"
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"M={M} N={N} K={K}, median of {args.reps}")
    g = torch.Generator(device=dev).manual_seed(0)
    a = (torch.randn(M, K, device=dev, generator=g)).to(torch.float8_e4m3fn)
    w = (torch.randn(N, K, device=dev, generator=g)).to(torch.float8_e4m3fn)
    flops = 2.0 * M * N * K
    rows = []

    def report(name, fn):
        try:
            ms = timed(fn, args.reps)
            rows.append({"scaling": name, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12})
            print(f"{name:<34} {ms:9.4f} ms {flops / (ms * 1e-3) / 1e12:9.1f} TFLOP/s")
        except Exception as e:  # noqa: BLE001 - report what this torch refuses
            rows.append({"scaling": name, "error": str(e)[:300]})
            print(f"{name:<34} refused: {str(e)[:300]}")

    one = torch.tensor(1.0, device=dev)
    for fast in (False, True):
        report(f"tensor fast_accum={int(fast)}",
               lambda fast=fast: torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                                  use_fast_accum=fast))
    kb = (K + 127) // 128
    l4 = (kb + 3) // 4 * 4
    # 1x128 activations: scale_a [M, K/128] outer-dim-major (stride (1, M)).
    sa = (torch.rand(M, kb, device=dev) + 0.5).t().contiguous().t()
    # 128x128 weights: scale_b for mat_b = w.t() [K, N]: [K/128, N/128] with stride (1, L4) (kb padded to 4).
    sbw = torch.zeros((N + 127) // 128, l4, device=dev)
    sbw[:, :kb] = torch.rand((N + 127) // 128, kb, device=dev) + 0.5
    sb128 = sbw.t()[:kb]
    # 1x128 weights: scale_b [K/128, N], outer-dim-major.
    sb1 = (torch.rand(N, kb, device=dev) + 0.5).t().contiguous()
    report("blockwise 1x128 x 128x128",
           lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb128, out_dtype=torch.bfloat16))
    report("blockwise 1x128 x 1x128",
           lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb1, out_dtype=torch.bfloat16))
    ab = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    wb = torch.randn(N, K, device=dev, dtype=torch.bfloat16)
    report("bf16 matmul (reference)", lambda: ab @ wb.t())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "shape": [M, N, K],
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
