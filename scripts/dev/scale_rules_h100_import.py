#!/usr/bin/env python3
"""Turn the output of scripts/device/record_scale_rules.py (run on an H100) into the recording that
tests/test_scale_rules_h100.cpp replays (data/scale_rules_h100/), and print how often each fp8flow scale rule
matches each recorded variant bit for bit (docs/quantization.md "Recorded on the H100").

Usage: scale_rules_h100_import.py DEVICE_OUT_DIR SPEC.npz FP8FLOW_BINARY [DATA_DIR]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "device"))
import record_scale_rules as rec  # noqa: E402

# variant -> (what ran, the fp8flow rule that must reproduce it (None: documented only), eps)
VARIANTS = {
    "dg_cuda": ("torch CUDA: DeepGEMM per_{token,block}_cast_to_fp8(use_ue8m0=False)", "deepgemm", None),
    "dgu_cuda": ("torch CUDA: DeepGEMM per_{token,block}_cast_to_fp8(use_ue8m0=True)", "deepgemm_ue8m0", None),
    "dgold_cuda": ("torch CUDA: older form x * (448.0 / amax), sf = amax / 448.0", None, None),
    "dg_cpu": ("torch CPU: DeepGEMM per_{token,block}_cast_to_fp8(use_ue8m0=False)", "deepgemm_cpu", None),
    "dgu_cpu": ("torch CPU: DeepGEMM per_{token,block}_cast_to_fp8(use_ue8m0=True)", "deepgemm_ue8m0_cpu", None),
    "dgold_cpu": ("torch CPU: older form x * (448.0 / amax), sf = amax / 448.0", None, None),
    "paper_rt_triton": ("Triton: FP8-Flow-MoE SwiGLU quant, quantize-given-y, fp8_max runtime (forward kernel)",
                        "paper_swiglu", None),
    "paper_ce_triton": ("Triton: FP8-Flow-MoE SwiGLU quant, quantize-given-y, fp8_max constexpr (backward kernel)",
                        "paper_swiglu", None),
    "te_pow2_triton": ("Triton: TE compute_scale_from_amax (div_rn, Inf -> FLT_MAX, pow2 mask), satfinite cast",
                       "te_pow2", 0.0),
    "te_fp32_triton": ("Triton: TE compute_scale_from_amax (div_rn, Inf -> FLT_MAX), satfinite cast", "te_fp32", 0.0),
    "te_pow2_eps_triton": ("Triton: the same, te_pow2 with eps 1e-10", "te_pow2", 1e-10),
    "te_fp32_eps_triton": ("Triton: the same, te_fp32 with eps 1e-10", "te_fp32", 1e-10),
}
KEEP_ROWS = {"random": 2048}
CANDIDATES = ["deepgemm", "deepgemm_cpu", "deepgemm_ue8m0", "deepgemm_ue8m0_cpu", "paper_swiglu", "te_pow2", "te_fp32"]


def block_hashes(codes, br, bc):
    R, C = codes.shape
    t = codes.reshape(R // br, br, C // bc, bc).transpose(0, 2, 1, 3).reshape(-1, br * bc)
    return rec.fnv1a(t)


def input_hash(x):
    return int(rec.fnv1a(x.reshape(1, -1).view(np.uint8))[0])


def ours(binary, work, x, tile, rule, eps):
    inp = os.path.join(work, "in.npy")
    np.save(inp, x)
    prefix = os.path.join(work, "q")
    cmd = [binary, "-q", "quantize", inp, prefix, "--format", "e4m3", "--granularity", tile, "--scale", rule]
    if eps:
        cmd += ["--eps", repr(eps)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return np.load(prefix + ".codes.npy"), np.load(prefix + ".scale_inv.npy").reshape(-1)


def main():
    dev, spec_path, binary = sys.argv[1:4]
    data = sys.argv[4] if len(sys.argv) > 4 else None
    spec = dict(np.load(spec_path))
    rec_all = dict(np.load(os.path.join(dev, "tok.npz")))
    rec_all.update(dict(np.load(os.path.join(dev, "block.npz"))))
    index = {"families": {}, "source": json.load(open(os.path.join(dev, "info.json")))}
    table = []
    with tempfile.TemporaryDirectory() as work:
        for fam, (stream, rows, cols, br, bc) in rec.FAMILIES.items():
            x = rec.family_input(spec, fam)
            assert np.array_equal(x.view(np.uint32), rec_all[f"{fam}.input"].view(np.uint32)), fam
            rows = x.shape[0]
            tile = f"{br}x{bc}"
            mine = {r: ours(binary, work, x, tile, r, None) for r in CANDIDATES
                    if not (fam == "block" and r in ("paper_swiglu", "te_pow2", "te_fp32"))}
            for eps in (1e-10,):
                if fam != "block":
                    for r in ("te_pow2", "te_fp32"):
                        mine[f"{r}@{eps}"] = ours(binary, work, x, tile, r, eps)
            variants, scales, hashes = [], [], []
            for var, (what, rule, eps) in VARIANTS.items():
                key = f"{fam}.{var}"
                if key + ".codes" not in rec_all:
                    continue
                codes, sc = rec_all[key + ".codes"], rec_all[key + ".scale"].astype(np.float32)
                entry = {"name": var, "source": what, "rule": rule, **({"eps": eps} if eps else {})}
                if var.startswith("te_") and eps:
                    # A block of NaNs only: Triton's tl.max gives NaN (so TE's formula keeps scale 1), where TE's
                    # CUDA kernel folds fmaxf from 0 and floors the 0 at eps, as te_* do. A difference of our
                    # Triton transcription, not of TE: the scales of these blocks are not compared.
                    allnan = np.where(np.isnan(x.reshape(-1, br * bc)).all(axis=1))[0]
                    if allnan.size:
                        entry["skip_scale_blocks"] = [int(b) for b in allnan]
                        entry["skip_why"] = ("all-NaN block: Triton's tl.max is NaN there, TE's fmaxf fold from 0 is 0 "
                                             "(then eps); codes are still compared")
                variants.append(entry)
                scales.append(sc)
                hashes.append(block_hashes(codes, br, bc))
                for cand, (mc, ms) in mine.items():
                    same_s = (ms.view(np.uint32) == sc.view(np.uint32)).mean()
                    same_c = (mc == codes).mean()
                    same_b = (block_hashes(mc, br, bc) == hashes[-1]).mean()
                    table.append((fam, var, cand, same_s, same_b, same_c))
            # The committed recording: the variants a rule must reproduce; the random family's first KEEP rows
            # (each row depends on its own spec entry only, so a prefix is a valid recording of its own).
            keep = [i for i, v in enumerate(variants) if v["rule"] is not None]
            nrows = min(rows, KEEP_ROWS.get(fam, rows))
            nblk = (nrows // br) * (cols // bc)
            index["families"][fam] = {"stream": stream, "rows": nrows, "cols": cols, "block": [br, bc],
                                      "input_fnv1a": input_hash(x[:nrows]), "variants": [variants[i] for i in keep]}
            if data:
                nspec = nblk if br == 1 else spec[f"{fam}_lead"].size
                for k in ("lead", "spread", "special"):
                    np.save(os.path.join(data, f"{fam}_{k}.npy"), spec[f"{fam}_{k}"][:nspec])
                np.save(os.path.join(data, f"{fam}_scale.npy"),
                        np.stack([scales[i][:nblk] for i in keep]).astype(np.float32))
                np.save(os.path.join(data, f"{fam}_hash.npy"),
                        np.stack([hashes[i][:nblk] for i in keep]).astype(np.uint32))
    if data:
        with open(os.path.join(data, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
    # The rule meant to reproduce each variant, and the closest alternative (GPU vs CPU torch).
    pairs = {"dg_cuda": ("deepgemm", "deepgemm_cpu"), "dgu_cuda": ("deepgemm_ue8m0", "deepgemm_ue8m0_cpu"),
             "dgold_cuda": ("deepgemm", "deepgemm_cpu"), "dg_cpu": ("deepgemm_cpu", "deepgemm"),
             "dgu_cpu": ("deepgemm_ue8m0_cpu", "deepgemm_ue8m0"), "dgold_cpu": ("deepgemm_cpu", "deepgemm"),
             "paper_rt_triton": ("paper_swiglu",), "paper_ce_triton": ("paper_swiglu",),
             "te_pow2_triton": ("te_pow2",), "te_fp32_triton": ("te_fp32",),
             "te_pow2_eps_triton": ("te_pow2@1e-10",), "te_fp32_eps_triton": ("te_fp32@1e-10",)}
    print(f"{'family':<7} {'variant':<19} {'fp8flow rule':<22} {'scales':>8} {'blocks':>8} {'codes':>8}")
    for fam, var, cand, s, b, c in table:
        if cand in pairs.get(var, ()):
            print(f"{fam:<7} {var:<19} {cand:<22} {100 * s:7.2f}% {100 * b:7.2f}% {100 * c:7.3f}%")


if __name__ == "__main__":
    main()
