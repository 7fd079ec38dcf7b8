from collections.abc import Sequence
from typing import Annotated

import numpy
from numpy.typing import NDArray


git_commit: str

def set_threads(n: int) -> None:
    """Worker threads of the long calls (0: all cores)."""

def get_threads() -> int:
    """Worker threads of the long calls (0: all cores)."""

def formats() -> list[str]:
    """Names of every format."""

def encode_f32(x: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)], format: str, round: str, overflow: str, seed: int) -> object: ...

def encode_f64(x: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)], format: str, round: str, overflow: str, seed: int) -> object: ...

def encode_ue8m0(x: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)], rule: str, overflow: str) -> NDArray[numpy.uint8]: ...

def decode_u8(codes: Annotated[NDArray[numpy.uint8], dict(order='C', device='cpu', writable=False)], format: str, f64: bool) -> object: ...

def decode_u16(codes: Annotated[NDArray[numpy.uint16], dict(order='C', device='cpu', writable=False)], format: str, f64: bool) -> object: ...

def quantize(x: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], format: str, granularity: str, scale: str, groups: Sequence[int] | None, eps: float | None, overflow: str | None, scale_format: str, input_dtype: str) -> tuple: ...

def quantize_precast(x: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], format: str, granularity: str, scale: str, groups: Sequence[int] | None, eps: float | None, input_dtype: str) -> NDArray[numpy.float64]: ...

def dequantize(codes: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], scale_inv: object, format: str, granularity: str, groups: Sequence[int] | None, transposed: bool) -> NDArray[numpy.float32]: ...

def transpose(codes: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], scale_inv: object, method: str, groups: Sequence[int] | None, round: str, seed: int, format: str, block: int) -> tuple: ...

def transpose_direct(x: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], format: str, block: int, groups: Sequence[int] | None, eps: float | None, input_dtype: str) -> tuple: ...

def gemm(a: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], b: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], scale_a: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)] | None, scale_b: Annotated[NDArray[numpy.float32], dict(order='C', device='cpu', writable=False)] | None, granularity_a: str, granularity_b: str, accum: str, format: str, format_b: str, promote_interval: int, acc_bits: int, group: int, fast_accum: bool) -> NDArray[numpy.float32]: ...

def compare_quantized(got_codes: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], got_scales: object, want_codes: Annotated[NDArray[numpy.uint8], dict(shape=(None, None), order='C', device='cpu', writable=False)], want_scales: object, format: str, granularity: str, groups: Sequence[int] | None, got_transposed: bool, want_transposed: bool, input: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)] | None, precast: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)] | None, max_listed: int) -> tuple: ...

def compare_values(got: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], want: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], input: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)] | None, max_listed: int) -> tuple: ...

def run_dataflow(dataflow: str, x: Annotated[NDArray[numpy.float64], dict(shape=(None, None), order='C', device='cpu', writable=False)], wr: Annotated[NDArray[numpy.float64], dict(shape=(None, None), order='C', device='cpu', writable=False)], w1: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)], w2: Annotated[NDArray[numpy.float64], dict(order='C', device='cpu', writable=False)], dy: Annotated[NDArray[numpy.float64], dict(shape=(None, None), order='C', device='cpu', writable=False)], topk: int, align: int, score: str, transpose: str | None, accum: str | None) -> dict: ...

def group_blocks_to_codes(blocks: Annotated[NDArray[numpy.uint8], dict(order='C', device='cpu', writable=False)], rows: int, cols: int, groups: Sequence[int]) -> NDArray[numpy.uint8]:
    """
    Per-group column copies [cols, m_g] concatenated flat -> one [cols, rows] column copy.
    """
