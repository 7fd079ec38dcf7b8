"""Input normalisation: numpy, ml_dtypes and CPU torch tensors to C-contiguous numpy arrays, without a copy
where the dtype and layout already fit (a torch CPU tensor shares its memory through ``Tensor.numpy()``)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

# dtype names (ml_dtypes and torch spell float8 types alike) -> fp8flow format names
_FLOAT8 = {
    "float8_e4m3fn": "e4m3", "float8_e5m2": "e5m2", "float8_e4m3fnuz": "e4m3fnuz",
    "float8_e5m2fnuz": "e5m2fnuz", "float8_e8m0fnu": "ue8m0", "float4_e2m1fn": "e2m1",
    "float6_e2m3fn": "e2m3", "float6_e3m2fn": "e3m2",
}
_ALIASES = {"e4m3fn": "e4m3", "e8m0fnu": "ue8m0", "fp4": "e2m1", "bfloat16": "bf16", "float16": "f16",
            "float32": "f32"}


def _is_torch(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def to_numpy(a: Any, what: str) -> Tuple[np.ndarray, Optional[str]]:
    """(array, tag): tag is a format name for float8/float4/float6 codes (array: their uint8 codes), "bf16"
    for bfloat16 (array: uint16 codes), "f16" for float16, else None."""
    if _is_torch(a):
        import torch

        if a.device.type != "cpu":
            raise ValueError(f"{what}: a torch tensor on {a.device}; fp8flow runs on the CPU: pass t.cpu()")
        t = a.detach()
        name = str(t.dtype).split(".")[-1]
        if name in _FLOAT8:
            return t.view(torch.uint8).numpy(), _FLOAT8[name]
        if name == "bfloat16":
            return t.view(torch.int16).numpy().view(np.uint16), "bf16"
        if name == "float16":
            return t.numpy(), "f16"
        return t.numpy(), None
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    name = arr.dtype.name
    if name in _FLOAT8:
        return arr.view(np.uint8), _FLOAT8[name]
    if name == "bfloat16":
        return arr.view(np.uint16), "bf16"
    if arr.dtype == np.float16:
        return arr, "f16"
    return arr, None


def _check_ndim(a: np.ndarray, ndim: Optional[int], what: str) -> None:
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{what}: shape {tuple(a.shape)}: expected a {ndim}-D array")


def as_float32(x: Any, what: str, ndim: Optional[int] = None) -> Tuple[np.ndarray, str]:
    """(float32 C-contiguous array, source dtype f32/bf16/f16). bfloat16/float16 widen exactly; float64
    rounds to nearest float32 (as the CLI's quantize reads float64 files); float8 codes decode exactly."""
    from . import _core

    a, tag = to_numpy(x, what)
    _check_ndim(a, ndim, what)
    if tag == "bf16":
        return _core.decode_u16(np.ascontiguousarray(a), "bf16", False), "bf16"
    if tag == "f16":
        return np.ascontiguousarray(a, dtype=np.float32), "f16"
    if tag is not None:
        return _core.decode_u8(np.ascontiguousarray(a), tag, False), "f32"
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{what}: dtype {a.dtype}: expected floating-point values")
    return np.ascontiguousarray(a, dtype=np.float32), "f32"


def as_float_array(x: Any, what: str) -> np.ndarray:
    """float32 or float64 C-contiguous values (float64 kept: encode rounds it once from its exact value)."""
    a, _ = to_numpy(x, what)
    if a.dtype == np.float64:
        return np.ascontiguousarray(a)
    return as_float32(x, what)[0]


def format_name(fmt: Optional[str]) -> Optional[str]:
    return None if fmt is None else _ALIASES.get(fmt, fmt)


def as_codes(x: Any, fmt: Optional[str], what: str, ndim: Optional[int] = None,
             allow_16: bool = False) -> Tuple[np.ndarray, str]:
    """(uint8 (or uint16) C-contiguous codes, format): the format from the dtype (float8 arrays/tensors) or
    ``fmt``; both given and different is an error; neither: e4m3."""
    a, tag = to_numpy(x, what)
    _check_ndim(a, ndim, what)
    fmt = format_name(fmt)
    if tag in ("bf16", "f16"):
        if not allow_16:
            raise ValueError(f"{what}: {tag} values where FP8 codes were expected")
        if fmt is not None and fmt != tag:
            raise ValueError(f"{what}: dtype says {tag}, format says {fmt}")
        return np.ascontiguousarray(a, dtype=np.uint16), tag
    if tag is not None:
        if fmt is not None and fmt != tag:
            raise ValueError(f"{what}: dtype says {tag}, format says {fmt}")
        return np.ascontiguousarray(a), tag
    if a.dtype == np.int8:
        a = a.view(np.uint8)
    if allow_16 and a.dtype == np.uint16:
        if fmt is None:
            raise ValueError(f"{what}: uint16 codes need a format (bf16 or f16)")
        return np.ascontiguousarray(a), fmt
    if a.dtype != np.uint8:
        raise ValueError(f"{what}: dtype {a.dtype}: expected uint8 codes (or an ml_dtypes/torch float8 array)")
    return np.ascontiguousarray(a), fmt or "e4m3"
