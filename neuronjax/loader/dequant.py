"""Dequantization of llama.cpp's block formats over whole tensors, bit-identical to
`gguf.quants.dequantize`.

gguf decodes a tensor 16 rows at a time, so a SmolLM2 layer's matrices take hundreds of small numpy
calls each: 2.8 s for the shipped Q4_1 file. Here the blocks are decoded a few thousand at a time
(the pieces stay in the CPU's cache) with the same float32 operations in the same order, so every
value is the same to the bit: 0.25 s for that file. The formats (ggml-common.h), per block of 32
values:

- Q4_0: f16 scale d, 16 bytes of 4-bit q (value j in the low nibble of byte j, value 16 + j in
  its high nibble); x = d * (q - 8).
- Q4_1: f16 d, f16 minimum m, the same 16 bytes; x = d * q + m.
- Q5_0 / Q5_1: as Q4_0 / Q4_1 with a fifth bit per value from a 32-bit word qh (bit j for value j);
  x = d * (q - 16), or d * q + m.
- Q8_0: f16 d, 32 signed bytes q; x = q * d.

Any other format gguf reads (the k-quants, the i-quants, BF16) runs gguf's own block decoder on the
same large slices, and F32 / F16 (plain views) go to gguf as they are.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 17  # values per step (0.5 MiB of float32, 4096 blocks of 32), which stay in a core's L2 cache


def _aligned_empty(shape: tuple) -> np.ndarray:
    """float32 [shape] starting on a 64-byte boundary, which a CPU device adopts without a copy."""
    nbytes = int(np.prod(shape)) * 4
    raw = np.empty(nbytes + 64, np.uint8)
    at = -raw.ctypes.data % 64
    return raw[at : at + nbytes].view(np.float32).reshape(shape)


def _halves(blocks: np.ndarray, at: int) -> np.ndarray:
    """The f16 at bytes [at, at + 2) of each block, as float32 [blocks, 1]."""
    return blocks[:, at : at + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray, out: np.ndarray) -> None:
    """4-bit values of 16 packed bytes per block into out [blocks, 32] (float32)."""
    out[:, :16] = qs & np.uint8(0x0F)
    out[:, 16:] = qs >> np.uint8(4)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """Bit j of each block's little-endian 32-bit qh, times 16: [blocks, 32] uint8."""
    return np.unpackbits(qh, axis=1, bitorder="little") << np.uint8(4)


def _q4_0(b: np.ndarray, out: np.ndarray) -> None:
    _nibbles(b[:, 2:], out)
    out -= np.float32(8)
    out *= _halves(b, 0)


def _q4_1(b: np.ndarray, out: np.ndarray) -> None:
    _nibbles(b[:, 4:], out)
    out *= _halves(b, 0)
    out += _halves(b, 2)


def _q5_0(b: np.ndarray, out: np.ndarray) -> None:
    _nibbles(b[:, 6:], out)
    out += _fifth_bits(b[:, 2:6])
    out -= np.float32(16)
    out *= _halves(b, 0)


def _q5_1(b: np.ndarray, out: np.ndarray) -> None:
    _nibbles(b[:, 8:], out)
    out += _fifth_bits(b[:, 4:8])
    out *= _halves(b, 0)
    out += _halves(b, 2)


def _q8_0(b: np.ndarray, out: np.ndarray) -> None:
    out[...] = b[:, 2:].view(np.int8)
    out *= _halves(b, 0)


# ggml type name -> (bytes per block, decoder of [blocks, bytes] into float32 [blocks, 32])
DECODERS = {"Q4_0": (18, _q4_0), "Q4_1": (20, _q4_1), "Q5_0": (22, _q5_0), "Q5_1": (24, _q5_1), "Q8_0": (34, _q8_0)}


def _gguf_blocks(qtype):
    """gguf's own decoder of one format's blocks, or None (then gguf.quants.dequantize decides)."""
    from gguf import GGML_QUANT_SIZES, quants

    cls = getattr(quants, "_type_traits", {}).get(qtype)
    if cls is None or not hasattr(cls, "dequantize_blocks") or qtype.name in ("F32", "F16"):
        return None
    if hasattr(cls, "init_grid"):
        cls.init_grid()  # the i-quants' lookup grids
    block, size = GGML_QUANT_SIZES[qtype]
    return size, block, cls.dequantize_blocks


def dequantize(data: np.ndarray, qtype) -> np.ndarray:
    """float32 values of a GGUF tensor's data as gguf.GGUFReader gives it (quantized types: bytes,
    the last axis in bytes); the same array, to the bit, as gguf.quants.dequantize(data, qtype).
    Raises NotImplementedError for a format gguf cannot read."""
    from gguf import quants

    found = DECODERS.get(qtype.name)
    if found is not None:
        size, decode = found
        block = 32
    elif (gguf_blocks := _gguf_blocks(qtype)) is not None:
        size, block, blocks_fn = gguf_blocks

        def decode(b, out):
            out[...] = blocks_fn(b)
    else:
        return quants.dequantize(data, qtype)
    if data.dtype != np.uint8 or data.shape[-1] % size:
        return quants.dequantize(data, qtype)
    blocks = data.reshape(-1, size)
    out = _aligned_empty((blocks.shape[0], block))
    step = max(1, CHUNK // block)
    for s in range(0, blocks.shape[0], step):
        decode(blocks[s : s + step], out[s : s + step])
    return out.reshape(*data.shape[:-1], data.shape[-1] // size * block)
