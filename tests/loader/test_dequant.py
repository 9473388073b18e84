"""Our dequantization gives gguf's values to the bit: for every format gguf decodes, on random
blocks (any byte pattern: every scale a float16 can hold, NaN and infinity included), on blocks
whose scales are the float16 edge values, across the chunk boundaries, and on the shipped file."""

import numpy as np
import pytest

from neuronjax.loader import dequant

gguf = pytest.importorskip("gguf")
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants  # noqa: E402

OURS = sorted(dequant.DECODERS)  # decoded by our own code
OTHERS = sorted(t.name for t in getattr(quants, "_type_traits", {}) if t.name not in dequant.DECODERS)
# float16 bit patterns: 0, -0, the smallest subnormal, a subnormal, the smallest normal, 1, -1, the
# largest finite, -largest, +inf, -inf, a quiet NaN, a NaN with a payload, a negative NaN
F16_EDGES = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00,
                      0x7C01, 0xFE00], np.uint16)  # fmt: skip


def _same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    want = np.asarray(want)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, (what, got.shape, want.shape)
    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert diff.size == 0, f"{what}: {diff.size} values differ, e.g. at {diff[:5]}: {got.ravel()[diff[:5]]} vs {want.ravel()[diff[:5]]}"


def _random(qtype, rows: int, blocks_per_row: int, seed: int) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    return np.random.default_rng(seed).integers(0, 256, (rows, blocks_per_row * size), dtype=np.uint8)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 and the like, on both sides
@pytest.mark.parametrize("name", OURS + OTHERS)
def test_random_blocks_match_gguf_to_the_bit(name):
    qtype = GGMLQuantizationType[name]
    block = GGML_QUANT_SIZES[qtype][0]
    # more blocks than one step of CHUNK values, and not a multiple of it: the last step is partial
    per_row = max(1, 2 * dequant.CHUNK // block // 7 + 3)
    for seed, rows in enumerate((1, 7)):
        data = _random(qtype, rows, per_row, seed)
        _same_bits(dequant.dequantize(data, qtype), quants.dequantize(data, qtype), f"{name}, {rows} rows")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", OURS)
def test_edge_scales_match_gguf_to_the_bit(name):
    """Every pair of edge float16 values as the block's scale d and (Q4_1, Q5_1) minimum m, with
    random quants, and quants at their extremes (all bits 0, all bits 1)."""
    qtype = GGMLQuantizationType[name]
    size = GGML_QUANT_SIZES[qtype][1]
    d, m = (a.ravel() for a in np.meshgrid(F16_EDGES, F16_EDGES))
    blocks = np.random.default_rng(1).integers(0, 256, (3, d.size, size), dtype=np.uint8)
    blocks[1, :, 2:] = 0
    blocks[2, :, 2:] = 255
    blocks = blocks.reshape(-1, size)
    blocks[:, 0:2] = np.tile(d, 3).view(np.uint8).reshape(-1, 2)
    if name in ("Q4_1", "Q5_1"):
        blocks[:, 2:4] = np.tile(m, 3).view(np.uint8).reshape(-1, 2)
    _same_bits(dequant.dequantize(blocks, qtype), quants.dequantize(blocks, qtype), name)


def test_plain_floats_and_unreadable_formats_go_to_gguf():
    data = np.arange(6, dtype=np.float16).reshape(2, 3)
    _same_bits(dequant.dequantize(data, GGMLQuantizationType.F16), quants.dequantize(data, GGMLQuantizationType.F16), "F16")
    with pytest.raises(NotImplementedError):
        dequant.dequantize(np.zeros((2, 36), np.uint8), GGMLQuantizationType.Q8_1)


@pytest.mark.real_model
def test_the_shipped_file_matches_gguf_to_the_bit():
    import neuronjax

    reader = gguf.GGUFReader(neuronjax.default_model_path())
    kinds = set()
    for t in reader.tensors:
        kinds.add(t.tensor_type.name)
        _same_bits(dequant.dequantize(t.data, t.tensor_type), quants.dequantize(t.data, t.tensor_type), t.name)
    assert {"Q4_1", "Q8_0"} <= kinds
