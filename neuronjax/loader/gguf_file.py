"""A GGUF file's metadata and tensor table, read in one pass; the tensors stay in the memory map.

gguf.GGUFReader keeps every metadata value as numpy views, one per string of the tokenizer's
vocabulary and merges (about 150,000 on SmolLM2), which took 2 s of a 10 s load. This reader
decodes each value once into plain Python (what `ReaderField.contents()` returns) and gives the
tensors as the same typed views of the file. It reads little-endian files of GGUF versions 2 and 3,
what llama.cpp writes; any other file, and any file it cannot parse, goes to gguf.GGUFReader,
whose result (or error) is then the answer, so damaged files are reported as before.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any, NamedTuple

import numpy as np

# GGUF metadata value types (gguf.GGUFValueType) of fixed width: struct format
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_VERSIONS = (2, 3)
_ALIGNMENT = 32  # llama.cpp's default, when general.alignment is not stated


class Tensor(NamedTuple):
    """One tensor of the file, as gguf.ReaderTensor holds it: `shape` in ggml order (fastest
    dimension first), `data` a view of the file (float and integer types as their own dtype in
    numpy order, quantized types as bytes with the last axis in bytes)."""

    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]
    data: np.ndarray


class GGUFFile(NamedTuple):
    path: str
    metadata: dict[str, Any]  # key -> value (str, int, float, bool, or a list of them)
    tensors: list[Tensor]


def read(path: str) -> GGUFFile:
    """The metadata and tensors of `path`. Raises what gguf.GGUFReader raises on a file it cannot read."""
    try:
        return _read(path)
    except Exception:  # not a file this reader handles: gguf's reader decides (and names the problem)
        return _from_gguf_reader(path)


def _read(path: str) -> GGUFFile:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if buf[:4] != b"GGUF":
        raise ValueError("GGUF magic invalid")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in _VERSIONS:
        raise ValueError(f"GGUF version {version}")
    pos = 24
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = _string(buf, pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        if key in metadata:
            raise ValueError(f"duplicate key {key}")
        metadata[key], pos = _value(buf, pos + 4, kind)
    table = []
    for _ in range(n_tensors):
        name, pos = _string(buf, pos)
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        kind, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        table.append((name, dims, GGMLQuantizationType(kind), offset))
    align = metadata.get("general.alignment", _ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise ValueError("general.alignment")
    start = -(-pos // align) * align
    data = np.frombuffer(buf, np.uint8)
    tensors, names = [], set()
    for name, dims, qtype, offset in table:
        if name in names:
            raise ValueError(f"duplicate tensor {name}")
        names.add(name)
        block, size = GGML_QUANT_SIZES[qtype]
        rows = tuple(reversed(dims))  # numpy order
        n = int(np.prod(dims))
        dtype = _PLAIN.get(qtype.name)
        if dtype is None:
            if rows[-1] % block:
                raise ValueError(f"tensor {name}: row of {rows[-1]} not a multiple of {block}")
            rows, nbytes = (*rows[:-1], rows[-1] // block * size), n // block * size
        else:
            nbytes = n * np.dtype(dtype).itemsize
        at = start + offset
        if at + nbytes > len(data):
            raise ValueError(f"tensor {name} runs past the end of the file")
        view = data[at : at + nbytes].view(dtype or np.uint8).reshape(rows)
        tensors.append(Tensor(name, qtype, tuple(int(d) for d in dims), view))
    return GGUFFile(path, metadata, tensors)


# ggml types stored as plain numbers (gguf's reader gives them their numpy dtype)
_PLAIN = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
          "I32": np.int32, "I64": np.int64}  # fmt: skip


def _string(buf, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise ValueError("string runs past the end of the file")
    return buf[pos + 8 : end].decode("utf-8"), end


def _value(buf, pos: int, kind: int) -> tuple[Any, int]:
    fmt = _SCALARS.get(kind)
    if fmt is not None:
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        return v, pos + struct.calcsize(fmt)
    if kind == _STRING:
        return _string(buf, pos)
    if kind != _ARRAY:
        raise ValueError(f"metadata value type {kind}")
    item, count = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    fmt = _SCALARS.get(item)
    if fmt is not None:  # numbers: one numpy view, then Python values (as ReaderField.contents() gives)
        width = struct.calcsize(fmt)
        values = np.frombuffer(buf, np.dtype("<" + fmt), count, pos).tolist()
        return values, pos + count * width
    if item != _STRING:
        raise ValueError(f"metadata array of type {item}")
    out = []
    unpack = struct.Struct("<Q").unpack_from
    for _ in range(count):
        (n,) = unpack(buf, pos)
        pos += 8
        out.append(buf[pos : pos + n].decode("utf-8"))
        pos += n
    if pos > len(buf):
        raise ValueError("string array runs past the end of the file")
    return out, pos


def _from_gguf_reader(path: str) -> GGUFFile:
    """The same record from gguf.GGUFReader (any byte order, and its errors on damaged files)."""
    import gguf

    reader = gguf.GGUFReader(path)
    metadata = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = [Tensor(t.name, t.tensor_type, tuple(int(d) for d in t.shape), t.data) for t in reader.tensors]
    return GGUFFile(path, metadata, tensors)
