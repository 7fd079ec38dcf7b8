"""Kernels as a user writes them, in numpy + ml_dtypes, independent of fp8flow: the oracles of the
`fp8flow check` CLI tests and of the Python package's tests (and the "user kernel" of docs/python.md)."""
import ml_dtypes as md
import numpy as np


def te_pow2_1x128(x):
    """TE Float8BlockQuantizer 1x128, force_pow_2_scales, eps 0, E4M3 satfinite: codes, scale_inv [R, C/128]."""
    r, c = x.shape
    nb = -(-c // 128)
    codes = np.empty((r, c), np.uint8)
    si = np.empty((r, nb), np.float32)
    for j in range(nb):
        blk = x[:, j * 128:(j + 1) * 128].astype(np.float32)
        amax = np.max(np.abs(blk), axis=1)
        scale = np.float32(448.0) / amax  # fp32 division (amax > 0 here)
        scale = np.where(amax > 0, scale, np.float32(1.0)).astype(np.float32)
        bits = scale.view(np.uint32) & np.uint32(0xFF800000)  # pow2: keep sign and exponent
        scale = bits.view(np.float32)
        si[:, j] = (np.float32(1.0) / scale).astype(np.float32)
        y = np.clip(blk * scale[:, None], -448.0, 448.0).astype(np.float32)
        codes[:, j * 128:(j + 1) * 128] = y.astype(md.float8_e4m3fn).view(np.uint8)
    return codes, si


def fork_sat(codes, si, m_splits, block=128):
    """The fork's Triton SAT (transformer_engine/pytorch/triton/blockwise_scaling_aware_fp8_transpose.py),
    in numpy: per expert group a column copy [cols, m_g] and column scale_inv [ceil(m_g/128), cols]."""
    cols = codes.shape[1]
    out_c, out_s = [], []
    r0 = 0
    for m in m_splits:
        gc = codes[r0:r0 + m]
        gs = si[r0:r0 + m]
        nb = -(-m // block)
        col = np.empty((cols, m), np.uint8)
        csi = np.empty((nb, cols), np.float32)
        for t in range(nb):
            rr = slice(t * block, min((t + 1) * block, m))
            for cb in range(-(-cols // block)):
                cc = slice(cb * block, min((cb + 1) * block, cols))
                s = gs[rr, cb]
                target = s.max()
                csi[t, cc] = target
                e_t = int((target.view(np.uint32) >> 23) & 0xFF) - 127
                e_s = ((s.view(np.uint32) >> 23) & 0xFF).astype(np.int32) - 127
                k = (e_t - e_s)[:, None]
                d = gc[rr, cc].astype(np.int32)
                sign, exp, mant = (d >> 7) & 1, (d >> 3) & 0xF, d & 7
                en = exp - k
                en = np.where(en < 1, 0, en)
                nd = (sign << 7) | (en << 3) | mant
                nd = np.where(exp == 0, 0, nd)
                col[cc, rr] = nd.T.astype(np.uint8)
        out_c.append(col)
        out_s.append(csi)
        r0 += m
    return out_c, out_s
