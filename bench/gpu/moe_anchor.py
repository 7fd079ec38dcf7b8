#!/usr/bin/env python3
"""Anchors for fp8flow-moe-bench (docs/gpu.md "Fused MoE kernels"), timed on the same GPU in the same call.

For the paper's MoE shape (4096 tokens, 256 experts, hidden 7168, top-8, FFN 2048) and the quickstart's
(1024, 32, 896, 8, 256), with each expert padded to a multiple of --align rows:
  * the FP8-Flow-MoE fork's Triton kernels (021ai/TransformerEngine-FP8FlowMoe,
    transformer_engine/pytorch/triton/permutation.py, given by --fork PATH; not part of this repository):
    make_row_id_map, permute_with_mask_map (FP8 codes as uint8 + 1x128 scales + probs, fused padding) and
    unpermute_with_mask_map (bf16, fused unpadding, with and without merging probs). The file is imported
    as it is; if that fails (Triton 3.6: `core.get_int_dtype` in the argsort helper), the failure is
    printed and the file is imported again with that one expression replaced by its value for the
    32-bit keys it sorts (tl.int32), and the result is marked "patched".
  * straightforward torch implementations of the same operations (index_select of codes / scales / probs
    through a row map with a zero row for padding; gather + fp32 sum over the top-k copies -> bf16;
    SwiGLU + 1x128 paper_swiglu quantization in fp32 torch ops).
Timing as fp8flow-moe-bench's "clean" column: per repeat, a read sweep of 4x L2, then one call between
CUDA events; median of --reps. Output: a table, and --json FILE.
"""
import argparse
import importlib.util
import json
import os
import sys
import tempfile
import traceback

import torch


def median_ms(fn, reps, flush):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        flush.sum()  # read sweep of 4x L2 (L2 clean before the timed call)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def load_fork(path):
    """Returns (module, note). Triton reads a kernel's source back from its file, so a patched copy is
    written to a file of its own."""
    def load(file, name):
        spec = importlib.util.spec_from_file_location(name, file)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    def smoke(mod):  # the row-id-map kernels compile at their first call
        rm = torch.zeros(8, 4, dtype=torch.int32, device="cuda")
        rm[:, 1] = 1
        mod.make_row_id_map(rm, 8, 4)
        torch.cuda.synchronize()
    try:
        mod = load(path, "fork_permutation")
        smoke(mod)
        return mod, "as is"
    except Exception as e:  # noqa: BLE001
        print(f"fork kernels as is failed: {type(e).__name__}: {str(e)[:400]}")
    src = open(path).read()
    patched = src.replace("core.get_int_dtype(bitwidth=x.dtype.primitive_bitwidth, signed=True)", "tl.int32")
    file = os.path.join(tempfile.mkdtemp(), "fork_permutation_patched.py")
    with open(file, "w") as f:
        f.write(patched)
    mod = load(file, "fork_permutation_patched")
    smoke(mod)
    return mod, "patched (get_int_dtype -> tl.int32)"


def routing(T, E, K, align, dev):
    g = torch.Generator(device="cpu").manual_seed(2511)
    scores = torch.randn(T, E, generator=g)
    top = scores.topk(K, dim=1).indices  # [T, K]
    probs_tk = torch.rand(T, K, generator=g)
    routing_map = torch.zeros(T, E, dtype=torch.bool)
    routing_map.scatter_(1, top, True)
    probs_te = torch.zeros(T, E)
    probs_te.scatter_(1, top, probs_tk)
    valid = routing_map.sum(0)
    padded = (valid + align - 1) // align * align
    offset = torch.cumsum(padded, 0) - padded
    rows = int(padded.sum())
    # row of copy (t, e): offset[e] + rank of t among e's tokens (token order)
    rank = torch.cumsum(routing_map.int(), 0) - 1
    row_of = torch.where(routing_map, offset[None, :] + rank, torch.full_like(rank, -1))
    row_src = torch.full((rows,), T, dtype=torch.int64)  # T: the zero row (padding)
    t_idx, e_idx = routing_map.nonzero(as_tuple=True)
    row_src[row_of[t_idx, e_idx]] = t_idx
    copy_row = row_of.gather(1, top.sort(1).values)  # [T, K] rows of each token's copies
    pad_offsets = torch.cumsum(padded - valid, 0) - (padded - valid)
    return dict(routing_map=routing_map.to(dev), probs_te=probs_te.to(dev), rows=rows,
                row_src=row_src.to(dev), copy_row=copy_row.to(dev), pad_offsets=pad_offsets.to(dev).int(),
                copy_probs=probs_te.gather(1, top.sort(1).values).to(dev))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fork", help="path to the fork's transformer_engine/pytorch/triton/permutation.py")
    ap.add_argument("--align", type=int, default=16)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--preset", action="append", choices=["paper", "quickstart"])
    ap.add_argument("--json")
    a = ap.parse_args()
    dev = "cuda"
    presets = {"paper": (4096, 256, 8, 7168, 2048), "quickstart": (1024, 32, 8, 896, 256)}
    names = a.preset or ["paper", "quickstart"]
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    flush = torch.ones(4 * l2 // 4, dtype=torch.float32, device=dev)
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", end="")
    try:
        import triton
        print(f", triton {triton.__version__}")
    except ImportError:
        print(", no triton")
    fork, note = None, "not given"
    if a.fork:
        try:
            fork, note = load_fork(a.fork)
        except Exception as e:  # noqa: BLE001
            note = f"failed: {type(e).__name__}: {e}"
            traceback.print_exc()
    print(f"fork kernels: {note}")
    results = {"gpu": torch.cuda.get_device_name(0), "fork": note, "align": a.align, "rows": []}

    def rec(preset, what, impl, ms, extra=""):
        results["rows"].append(dict(preset=preset, op=what, impl=impl, ms=ms, note=extra))
        print(f"{preset:11} {what:26} {impl:30} {ms:9.4f} ms {extra}")

    for name in names:
        T, E, K, H, F = presets[name]
        r = routing(T, E, K, a.align, dev)
        rows, sc = r["rows"], (H + 127) // 128
        codes = torch.randint(0, 126, (T, H), dtype=torch.uint8, device=dev)
        si = torch.rand(T, sc, device=dev)
        # --- torch: permute + pad (codes, scales, probs) through a row map with a zero row
        codes_z = torch.cat([codes, codes.new_zeros(1, H)])
        si_z = torch.cat([si, si.new_zeros(1, sc)])

        def torch_permute():
            return (codes_z.index_select(0, r["row_src"]), si_z.index_select(0, r["row_src"]))
        rec(name, "permute_pad_fp8", "torch index_select", median_ms(torch_permute, a.reps, flush),
            "(codes + scales; probs below)")
        probs_z = torch.cat([r["copy_probs"].flatten(), torch.zeros(1, device=dev)])
        copy_of_row = torch.full((rows,), T * K, dtype=torch.int64, device=dev)
        copy_of_row[r["copy_row"].flatten()] = torch.arange(T * K, device=dev)

        def torch_permute_all():
            return torch_permute() + (probs_z.index_select(0, copy_of_row),)
        rec(name, "permute_pad_fp8", "torch index_select x3", median_ms(torch_permute_all, a.reps, flush))
        # --- torch: unpermute + unpad
        o = torch.randn(rows, H, device=dev).to(torch.bfloat16)
        cr = r["copy_row"].flatten()

        def torch_unpermute():
            return o.index_select(0, cr).view(T, K, H).float().sum(1).to(torch.bfloat16)

        def torch_unpermute_merge():
            return (o.index_select(0, cr).view(T, K, H).float() * r["copy_probs"][..., None]).sum(1).to(torch.bfloat16)
        rec(name, "unpermute_bf16", "torch gather+sum", median_ms(torch_unpermute, a.reps, flush))
        rec(name, "unpermute_bf16_merge_probs", "torch gather+mul+sum", median_ms(torch_unpermute_merge, a.reps, flush))
        # --- torch: SwiGLU + 1x128 paper_swiglu quantization
        h = torch.randn(rows, 2 * F, device=dev).to(torch.bfloat16)
        w = torch.rand(rows, device=dev)

        def torch_swiglu():
            x = h.float()
            y = torch.nn.functional.silu(x[:, :F]) * x[:, F:] * w[:, None]
            yb = y.view(rows, F // 128, 128)
            amax = yb.abs().amax(-1).clamp_min(1e-10)
            si = torch.exp2(torch.ceil(torch.log2(amax / 448.0)))
            return (yb / si[..., None]).to(torch.float8_e4m3fn), si
        rec(name, "swiglu_quant_fwd", "torch fp32 ops", median_ms(torch_swiglu, a.reps, flush))
        # --- the fork's Triton kernels
        if fork is not None:
            try:
                rm = r["routing_map"]
                row_id_map = fork.make_row_id_map(rm.int(), T, E)
                rec(name, "make_row_id_map", "fork triton", median_ms(lambda: fork.make_row_id_map(rm.int(), T, E), a.reps, flush),
                    note)

                def fk_permute():
                    return fork.permute_with_mask_map(codes, row_id_map, r["probs_te"], si, r["pad_offsets"], T, E,
                                                      rows, H, sc)
                out, out_si, out_p = fk_permute()
                # Same layout as ours: check the codes against the torch gather.
                same = torch.equal(out, torch_permute()[0]) and torch.equal(out_si, torch_permute()[1])
                rec(name, "permute_pad_fp8", "fork triton (codes+scales+probs)",
                    median_ms(fk_permute, a.reps, flush), f"{note}; output equals torch gather: {same}")

                def fk_unpermute(merge):
                    return fork.unpermute_with_mask_map(o, row_id_map, r["probs_te"] if merge else None, None,
                                                        r["pad_offsets"], T, E, H)
                rec(name, "unpermute_bf16", "fork triton", median_ms(lambda: fk_unpermute(False), a.reps, flush), note)
                rec(name, "unpermute_bf16_merge_probs", "fork triton",
                    median_ms(lambda: fk_unpermute(True), a.reps, flush), note)
            except Exception as e:  # noqa: BLE001
                print(f"{name}: fork kernels failed: {type(e).__name__}: {e}")
                traceback.print_exc()
                results.setdefault("fork_errors", []).append(f"{name}: {type(e).__name__}: {e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
