"""fp8flow: the bit-exact FP8 golden model, from Python (docs/python.md).

Bindings of fp8flow's C++ core (``fp8flow._core``, nanobind), not a reimplementation: every call runs the
same code as the ``fp8flow`` command line, under the same names (formats, rounding modes, overflow policies,
granularities, scale rules, transpose methods, accumulation models).

Inputs are numpy arrays, ml_dtypes arrays (float8 codes, bfloat16) or CPU torch tensors (float8, bfloat16,
float16/32/64), taken without a copy where the layout allows. Outputs are numpy arrays; codes are ``uint8``
and ``codes.view(ml_dtypes.float8_e4m3fn)`` reads them as values. The GIL is released during the work;
``set_threads(n)`` sets the worker threads (0: all cores).

    >>> import numpy as np, fp8flow
    >>> x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    >>> q = fp8flow.quantize(x, granularity="1x128", scale="te_pow2")
    >>> q.codes.shape, q.scale_inv.shape
    ((4, 256), (4, 2))
    >>> fp8flow.compare((q.codes, q.scale_inv), (q.codes, q.scale_inv), granularity="1x128").bitexact
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._arrays import as_codes, as_float32, as_float_array, format_name, to_numpy
from .report import Report

__all__ = [
    "__version__", "set_threads", "get_threads", "formats", "encode", "decode", "convert", "quantize",
    "dequantize", "transpose", "gemm", "run_dataflow", "compare", "Quantized", "Report", "testing",
]
__version__: str = _core.__version__

ArrayLike = Any  # numpy / ml_dtypes arrays, CPU torch tensors, nested lists


def set_threads(n: int) -> None:
    """Worker threads of the long calls (quantize, transpose, gemm, encode, ...); 0: all cores."""
    _core.set_threads(int(n))


def get_threads() -> int:
    """The number set by :func:`set_threads` (0: all cores)."""
    return _core.get_threads()


def formats() -> list[str]:
    """Names of every format: e4m3, e5m2, e4m3fnuz, e5m2fnuz, ue8m0, e2m1, e2m3, e3m2, bf16, f16, f32."""
    return list(_core.formats())


# ---- encode / decode / convert ----------------------------------------------------------------------------

def encode(x: ArrayLike, format: str, round: str = "rne", overflow: str = "satfinite", seed: int = 0) -> np.ndarray:
    """Encode float values into codes of ``format`` (as ``fp8flow convert X --to FORMAT``).

    ``x``: float32 or float64 values (float64 is rounded once, from its exact value), any shape; float16 and
    bfloat16 inputs are widened exactly to float32. ``round``: rne, rz, ru, rd, rna, stochastic (Philox
    stream ``seed``, element i draws counter i). ``overflow``: satfinite or nonsat. For ``ue8m0`` the round
    names the UE8M0 rule instead (rz, ru, ceil, rn, floor).
    Returns codes of x's shape: uint8 (formats of <= 8 bits), uint16 (bf16, f16) or uint32 (f32).
    """
    a = as_float_array(x, "x")
    if format in ("ue8m0", "e8m0fnu"):
        return _core.encode_ue8m0(np.ascontiguousarray(a, dtype=np.float32), round, overflow)
    format = format_name(format)
    if a.dtype == np.float64:
        return _core.encode_f64(a, format, round, overflow, int(seed))
    if format == "f32":
        return _core.encode_f64(a.astype(np.float64), format, round, overflow, int(seed))
    return _core.encode_f32(a, format, round, overflow, int(seed))


def decode(codes: ArrayLike, format: Optional[str] = None, dtype: Any = np.float32) -> np.ndarray:
    """Decode codes of ``format`` exactly into float32 (or ``dtype=np.float64``); NaN codes give NaN.

    ``codes``: uint8 (or uint16 for bf16/f16), or an ml_dtypes / torch float8 array whose dtype names the
    format (then ``format`` may be left out)."""
    c, fmt = as_codes(codes, format, "codes", allow_16=True)
    f64 = np.dtype(dtype) == np.float64
    if c.dtype == np.uint16:
        return _core.decode_u16(c, fmt, f64)
    return _core.decode_u8(c, fmt, f64)


def convert(x: ArrayLike, to: str, round: str = "rne", overflow: str = "satfinite", seed: int = 0) -> np.ndarray:
    """``fp8flow convert``: the same as :func:`encode` (``to`` is the format)."""
    return encode(x, to, round=round, overflow=overflow, seed=seed)


# ---- quantize / dequantize --------------------------------------------------------------------------------

@dataclass
class Quantized:
    """A quantized tensor: ``codes`` (uint8; [rows, cols], or [cols, rows] for a column copy),
    ``scale_inv`` (COMPACT grid [row tiles, col tiles], float32, or uint8 UE8M0 codes) and ``meta`` (recipe,
    format, granularity, scale rule, shape, scale_shape, row_groups, eps, overflow, scale_format,
    codes_layout, origin). Unpacks as ``codes, scale_inv, meta = q``."""

    codes: np.ndarray
    scale_inv: np.ndarray
    meta: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.codes, self.scale_inv, self.meta))

    def values(self, dtype: Any = None) -> np.ndarray:
        """The codes as ml_dtypes values (no copy): ``codes.view(ml_dtypes.<format>)``."""
        import ml_dtypes

        names = {"e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "e4m3fnuz": "float8_e4m3fnuz",
                 "e5m2fnuz": "float8_e5m2fnuz"}
        return self.codes.view(dtype or getattr(ml_dtypes, names[self.meta["format"]]))


def quantize(x: ArrayLike, recipe: Optional[str] = None, *, format: str = "e4m3", granularity: str = "1x128",
             scale: str = "te_pow2", groups: Optional[Sequence[int]] = None, eps: Optional[float] = None,
             overflow: Optional[str] = None, scale_format: str = "fp32",
             input_dtype: Optional[str] = None) -> Quantized:
    """Quantize a 2-D tensor (as ``fp8flow quantize``): per tile the scale rule's scale, then every element
    cast to ``format``.

    ``recipe``: a recipe name such as ``"quant_1x128_e4m3_te_pow2"``, or ``format`` + ``granularity``
    (tensor, row, col, 1x128, 128x1, 128x128, 1x32, RxC) + ``scale`` (te_fp32, te_pow2, deepgemm,
    deepgemm_ue8m0, paper_swiglu, mx_floor, mx_ceil, deepgemm_cpu, deepgemm_ue8m0_cpu). ``groups``: expert group sizes along rows (tiles restart
    per group). ``eps``: te_* amax floor. ``overflow``: the element cast's policy (default: the rule's
    source). ``scale_format``: fp32 or ue8m0 (uint8 scale codes). ``input_dtype``: f32, bf16 or f16 -- which
    dtype the kernel read (te_fp32 clamps an infinite scale to that dtype's max); taken from x when it is a
    bfloat16/float16 array. float64 inputs are rounded to float32 first (as the CLI does).
    Returns :class:`Quantized` (codes [rows, cols], scale_inv, meta)."""
    if recipe is not None:
        format, granularity, scale = _parse_recipe(recipe)
    a, source = as_float32(x, "x", ndim=2)
    codes, scale_inv, meta = _core.quantize(a, format, granularity, scale, _groups(groups), eps, overflow,
                                            scale_format, input_dtype or source)
    return Quantized(codes, scale_inv, meta)


def _parse_recipe(recipe: str) -> Tuple[str, str, str]:
    parts = recipe.split("_")
    if len(parts) < 4 or parts[0] != "quant":
        raise ValueError(f"recipe '{recipe}': expected quant_<granularity>_<format>_<rule>, e.g. "
                         "quant_1x128_e4m3_te_pow2")
    return parts[2], parts[1], "_".join(parts[3:])


def _groups(groups: Optional[Sequence[int]]) -> Optional[list[int]]:
    """Expert group sizes as given (a kernel's m_splits), without the empty ones (they hold no rows; the
    FP8-Flow-MoE fork drops them before its kernel too)."""
    if groups is None:
        return None
    g = [int(v) for v in groups]
    if any(v < 0 for v in g):
        raise ValueError(f"groups {g}: sizes must be >= 0")
    kept = [v for v in g if v > 0]
    if g and not kept:
        raise ValueError(f"groups {g}: every group is empty")
    return kept


def dequantize(codes: ArrayLike, scale_inv: ArrayLike = None, *, format: Optional[str] = None,
               granularity: Optional[str] = None, groups: Optional[Sequence[int]] = None,
               transposed: Optional[bool] = None) -> np.ndarray:
    """RN32(code * scale_inv) per element, float32, in the codes' layout (as ``fp8flow dequantize``).

    Accepts a :class:`Quantized` (format, granularity, groups and layout from its meta) or ``codes`` +
    ``scale_inv`` + ``granularity`` (+ ``format``, ``groups``, ``transposed`` for a column copy stored
    [cols, rows])."""
    if isinstance(codes, Quantized):
        q = codes
        meta = q.meta
        codes, scale_inv = q.codes, q.scale_inv
        format = format or meta["format"]
        granularity = granularity or meta["granularity"]
        groups = groups if groups is not None else (meta.get("row_groups") or None)
        if transposed is None:
            transposed = meta.get("codes_layout") == "transposed"
    if scale_inv is None or granularity is None:
        raise ValueError("dequantize: pass a Quantized, or codes, scale_inv and granularity")
    c, fmt = as_codes(codes, format, "codes", ndim=2)
    return _core.dequantize(c, _scales(scale_inv, "scale_inv"), fmt, granularity, _groups(groups), bool(transposed))


def _scales(s: ArrayLike, what: str) -> np.ndarray:
    a, tag = to_numpy(s, what)
    if a.dtype == np.uint8 and tag in (None, "ue8m0"):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.float32)


# ---- transposes -------------------------------------------------------------------------------------------

def transpose(codes: ArrayLike, scale_inv: ArrayLike = None, method: str = "exact", *,
              groups: Optional[Sequence[int]] = None, round: str = "rne", seed: int = 0,
              format: Optional[str] = None, block: int = 128, x: ArrayLike = None,
              eps: Optional[float] = None) -> Quantized:
    """The column copy (Nx1, codes stored [cols, rows]) of a rowwise 1xN power-of-two tensor, as
    ``fp8flow transpose``: ``method`` naive, paper_kernel (the FP8-Flow-MoE kernel bit for bit, defects
    included), exact (correctly rounded under ``round``; stochastic draws Philox(``seed``, r*cols + c)) or
    direct (Nx1 te_pow2 quantization of the high-precision ``x``; codes/scale_inv unused).

    ``codes``/``scale_inv``: a :class:`Quantized` or uint8 [rows, cols] codes and float32
    [rows, ceil(cols/N)] scale_inv. ``groups``: expert group sizes along rows (tiles restart per group).
    Returns :class:`Quantized`: codes [cols, rows], scale_inv [sum_g ceil(m_g/N), cols]."""
    if method == "direct":
        if x is None:
            raise ValueError("transpose(method='direct') quantizes the high-precision tensor: pass x=")
        a, source = as_float32(x, "x", ndim=2)
        c, s, meta = _core.transpose_direct(a, format or "e4m3", int(block), _groups(groups), eps, source)
        return Quantized(c, s, meta)
    if isinstance(codes, Quantized):
        codes, scale_inv, meta = codes
        format = format or meta["format"]
    if scale_inv is None:
        raise ValueError("transpose: pass a Quantized, or codes and scale_inv")
    c, fmt = as_codes(codes, format, "codes", ndim=2)
    out = _core.transpose(c, _scales(scale_inv, "scale_inv"), method, _groups(groups), round, int(seed), fmt,
                          int(block))
    return Quantized(*out)


# ---- gemm -------------------------------------------------------------------------------------------------

def gemm(a: ArrayLike, b: ArrayLike, scale_a: ArrayLike = None, scale_b: ArrayLike = None, *,
         granularity_a: str = "tensor", granularity_b: str = "tensor", accum: str = "fp32_seq",
         format: Optional[str] = None, format_b: Optional[str] = None, promote_interval: int = 128,
         acc_bits: int = 13, group: int = 4, fast_accum: bool = False) -> np.ndarray:
    """FP8 GEMM emulation (as ``fp8flow gemm``): OUT[M, N] = A[M, K] . B[N, K]^T in float32.

    ``a``, ``b``: uint8 codes (or ml_dtypes/torch float8), both K-major. ``scale_a``/``scale_b``: float32
    scale_inv in the COMPACT grid of ``granularity_a``/``granularity_b`` (tensor, 1x128, 128x128, ...).
    ``accum``: exact, fp32_seq, fp32_pairwise, promote, hopper_fast, h100, h100_fast; ``promote_interval``
    (N_C), ``acc_bits``, ``group``, ``fast_accum`` tune the models (docs/gemm.md)."""
    ca, fa = as_codes(a, format, "a", ndim=2)
    cb, fb = as_codes(b, format_b or format or fa, "b", ndim=2)
    sa = None if scale_a is None else as_float32(scale_a, "scale_a")[0]
    sb = None if scale_b is None else as_float32(scale_b, "scale_b")[0]
    return _core.gemm(ca, cb, sa, sb, granularity_a, granularity_b, accum, fa, fb, int(promote_interval),
                      int(acc_bits), int(group), bool(fast_accum))


# ---- dataflows --------------------------------------------------------------------------------------------

def run_dataflow(dataflow: str, x: ArrayLike, wr: ArrayLike, w1: ArrayLike, w2: ArrayLike, dy: ArrayLike, *,
                 topk: int, align: int = 128, score: str = "softmax", transpose: Optional[str] = None,
                 accum: Optional[str] = None) -> dict:
    """Run one MoE layer's forward and backward under a dataflow (as ``fp8flow moe``; docs/dataflows.md) on
    the given tensors: ``dataflow`` fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow or a TOML file;
    x [tokens, hidden], wr [experts, hidden], w1 [experts, 2*ffn, hidden], w2 [experts, hidden, ffn],
    dy [tokens, hidden] (float64-able); the routing comes from the fp64 scores. ``transpose`` and ``accum``
    override every transpose step's method and every FP8 GEMM's accumulation model (default: the graph's,
    h100 in the built-in dataflows).
    Returns {tensor name: {"prec", "groups", "values" (float64 [rows, cols], FP8 tensors dequantized),
    "quantized" (a (codes, scale_inv, meta) tuple, FP8 tensors only)}}."""
    arrs = [np.ascontiguousarray(as_float_array(a, n), dtype=np.float64) for a, n in
            ((x, "x"), (wr, "wr"), (w1, "w1"), (w2, "w2"), (dy, "dy"))]
    out = _core.run_dataflow(dataflow, *arrs, int(topk), int(align), score, transpose, accum)
    for t in out.values():
        if "quantized" in t:
            t["quantized"] = Quantized(*t["quantized"])
    return out


# ---- compare ----------------------------------------------------------------------------------------------

def compare(got: Any, want: Any, *, granularity: Optional[str] = None, format: Optional[str] = None,
            groups: Optional[Sequence[int]] = None, input: ArrayLike = None, precast: ArrayLike = None,
            got_layout: Optional[str] = None, want_layout: Optional[str] = None,
            max_listed: int = 20) -> Report:
    """Compare a kernel's output with the golden one, bit for bit, and explain the differences.

    ``got``/``want``: each a :class:`Quantized`, a ``(codes, scale_inv)`` pair, plain codes (uint8 or
    float8; compared unscaled) or float32 values (dequantize / gemm outputs). In a pair, codes and scale_inv
    may be lists with one tensor per expert group (grouped kernels): column copies [cols, m_g] are joined side
    by side, rowwise tensors and scale grids one under the other. For quantized tensors
    ``granularity`` (default: want's meta, else 1x128), ``format`` (default: the meta or float8 dtype, else
    e4m3), ``groups`` (expert group sizes along rows) and the layouts (rowwise [rows, cols] or transposed
    [cols, rows]; default: the meta's) say how to read them. ``input``: the input values (logical
    [rows, cols]); ``precast``: the exact values the golden cast rounded (payload units), to tell ties.

    Returns a :class:`Report`: ``bitexact``, counts and fractions of differing codes and scales, the first
    ``max_listed`` differences with row, col, tile, expert group, input, both codes and values, ulp distance
    and cause (layout, tile_scale, nan_inf, saturation, sign_of_zero, rounding_tie, underflow, rounding_ulp,
    other), and whole-tensor layout findings. ``str(report)`` is the text ``fp8flow check`` prints."""
    inp = None if input is None else _as2d(np.asarray(as_float_array(input, "input"), dtype=np.float64))
    pre = None if precast is None else _as2d(np.asarray(as_float_array(precast, "precast"), dtype=np.float64))
    if not isinstance(want, (Quantized, tuple, list)):
        w, wtag = to_numpy(want, "want")
        g, gtag = to_numpy(got, "got")
        if w.dtype == np.float32 or g.dtype == np.float32:
            if w.dtype != np.float32 or g.dtype != np.float32:
                raise ValueError(f"compare: got dtype {g.dtype} against want dtype {w.dtype}: values compare "
                                 "float32 with float32, codes uint8 with uint8")
            w2, g2 = _as2d(w), _as2d(g)
            if g2.size != w2.size:
                raise ValueError(f"compare: got shape {tuple(g.shape)}, want {tuple(w.shape)}")
            js, text = _core.compare_values(g2.reshape(w2.shape), w2, _flat(inp), int(max_listed))
            return Report.from_core(js, text)
        # Unscaled codes (a conversion): one tensor-wide scale of 1.
        wc, fmt = as_codes(want, format, "want")
        gc, _ = as_codes(got, fmt, "got")
        w2, g2 = _as2d(wc), _as2d(gc)
        if g2.shape != w2.shape:
            raise ValueError(f"compare: got shape {tuple(gc.shape)}, want {tuple(wc.shape)}")
        one = np.ones((1, 1), np.float32)
        js, text = _core.compare_quantized(g2, one, w2, one, fmt, "tensor", None, False, False, _flat(inp),
                                           _flat(pre), int(max_listed))
        return Report.from_core(js, text)
    g_meta = got.meta if isinstance(got, Quantized) else {}
    w_meta = want.meta if isinstance(want, Quantized) else {}
    gc, gs = (got.codes, got.scale_inv) if isinstance(got, Quantized) else got
    wc, ws = (want.codes, want.scale_inv) if isinstance(want, Quantized) else want
    want_t = (want_layout or w_meta.get("codes_layout") or "rowwise") == "transposed"
    got_t = (got_layout or g_meta.get("codes_layout") or ("transposed" if want_t else "rowwise")) == "transposed"
    # Per-expert-group lists (one tensor per group, as grouped kernels return them): column copies [cols, m_g]
    # side by side, rowwise tensors [m_g, cols] and scale grids one under the other.
    gc = _concat(gc, axis=1 if got_t else 0, what="got codes")
    wc = _concat(wc, axis=1 if want_t else 0, what="want codes")
    gs, ws = _concat(gs, axis=0, what="got scale_inv"), _concat(ws, axis=0, what="want scale_inv")
    fmt = format or w_meta.get("format") or g_meta.get("format")
    wc, fmt = as_codes(wc, fmt, "want codes", ndim=2)
    gc, _ = as_codes(gc, fmt, "got codes", ndim=2)
    gran = granularity or w_meta.get("granularity") or g_meta.get("granularity") or "1x128"
    if groups is None:
        groups = w_meta.get("row_groups") or None
    js, text = _core.compare_quantized(gc, _as2d(_scales(gs, "got scale_inv")), wc,
                                       _as2d(_scales(ws, "want scale_inv")), fmt, gran, _groups(groups), got_t,
                                       want_t, _flat(inp), _flat(pre), int(max_listed))
    rep = Report.from_core(js, text)
    if groups is not None and any(int(v) == 0 for v in groups):  # report the groups as numbered by the caller
        index = [i for i, v in enumerate(groups) if int(v) > 0]
        for m in rep.mismatches:
            m.group = index[m.group]
        for m in rep.scale_mismatches:
            m["group"] = index[m["group"]]
    return rep


def _concat(a: Any, axis: int, what: str) -> Any:
    if not isinstance(a, (list, tuple)):
        return a
    parts = [to_numpy(p, what)[0] for p in a]
    if not parts:
        raise ValueError(f"{what}: an empty list")
    return np.concatenate([p if p.ndim == 2 else p.reshape(1, -1) for p in parts], axis=axis)


def _flat(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _as2d(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a))
    if a.ndim == 2:
        return a
    if a.ndim <= 1:
        return a.reshape(1, -1)
    return a.reshape(-1, a.shape[-1])


from . import testing  # noqa: E402  (after the functions it uses)
