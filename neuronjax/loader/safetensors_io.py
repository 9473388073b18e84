"""A small torch-free safetensors reader that maps one tensor at a time.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte
offsets) and the raw data. Reading it ourselves lets every dtype (bfloat16 and float8 included)
come back as NumPy via ml_dtypes, and lets a truncated or corrupt file fail with its name and the
tensor at fault instead of a crash inside a library.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, Iterator

import ml_dtypes
import numpy as np

from neuronjax.errors import CheckpointError

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def read_header(path: str) -> tuple[dict, int]:
    """(header without __metadata__, byte offset where the data starts)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than the 8-byte header length)")
        n = int.from_bytes(raw, "little")
        if n > size - 8:
            raise CheckpointError(f"{path}: corrupt safetensors file: header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    return header, 8 + n


def tensors(path: str) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """(name, reader) for every tensor in one file; the reader returns a NumPy copy."""
    header, start = read_header(path)
    size = os.path.getsize(path)
    for name, info in header.items():
        try:
            dtype, shape, (lo, hi) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor '{name}' has a malformed header entry {info!r}") from None
        if dtype not in DTYPES:
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {dtype!r}; supported: {sorted(DTYPES)}")
        np_dtype = np.dtype(DTYPES[dtype])
        if hi - lo != math.prod(shape) * np_dtype.itemsize:
            raise CheckpointError(
                f"{path}: tensor '{name}' spans {hi - lo} bytes but shape {shape} of {dtype} needs "
                f"{math.prod(shape) * np_dtype.itemsize}"
            )
        if start + hi > size:
            raise CheckpointError(
                f"{path}: file is truncated: tensor '{name}' ends at byte {start + hi} of a {size}-byte file"
            )

        def read(lo=lo, shape=shape, np_dtype=np_dtype):
            if math.prod(shape) == 0:
                return np.zeros(shape, np_dtype)
            mapped = np.memmap(path, dtype=np_dtype, mode="r", offset=start + lo, shape=shape)
            out = np.array(mapped)
            del mapped
            return out

        yield name, read


def checkpoint_files(directory: str) -> list[str]:
    """The safetensors files of a checkpoint directory, through the index when there is one."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: expected a JSON object with a 'weight_map' field ({e})") from None
        files = sorted(set(weight_map.values()))
        for name in files:
            if not os.path.exists(os.path.join(directory, name)):
                raise CheckpointError(f"{index}: lists shard '{name}', which does not exist in {directory}")
        return [os.path.join(directory, n) for n in files]
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no *.safetensors file and no model.safetensors.index.json")
    return [os.path.join(directory, f) for f in files]
