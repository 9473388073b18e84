"""Our GGUF reader gives what gguf.GGUFReader gives: every metadata value as `contents()` returns
it (each value type, arrays of each), every tensor's name, type, shape and data; a big-endian file,
which it leaves to gguf's reader, the same; a damaged file gguf's own error."""

import os

import numpy as np
import pytest

from neuronjax.loader import gguf_file

gguf = pytest.importorskip("gguf")


def _reference(path):
    reader = gguf.GGUFReader(path)
    metadata = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return metadata, reader.tensors


def _same(path):
    ours = gguf_file.read(path)
    metadata, tensors = _reference(path)
    assert ours.metadata == metadata
    assert [type(v) for v in ours.metadata.values()] == [type(v) for v in metadata.values()]
    assert [t.name for t in ours.tensors] == [t.name for t in tensors]
    for a, b in zip(ours.tensors, tensors):
        assert (a.tensor_type, a.shape) == (b.tensor_type, tuple(int(d) for d in b.shape)), a.name
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, a.name
        assert np.array_equal(a.data.view(np.uint8), np.asarray(b.data).view(np.uint8)), a.name
    return ours


def _write(path, endianess=None):
    w = gguf.GGUFWriter(str(path), "llama", **({"endianess": endianess} if endianess is not None else {}))
    for kind, value in [("uint8", 200), ("int8", -100), ("uint16", 60000), ("int16", -30000), ("uint32", 4_000_000_000),
                        ("int32", -2_000_000_000), ("uint64", 2**63 + 5), ("int64", -(2**62)), ("float32", 0.1),
                        ("float64", 0.1), ("bool", True), ("string", "héllo wörld \u2581 \n")]:  # fmt: skip
        getattr(w, f"add_{kind}")(f"test.{kind}", value)
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.floats", [0.5, -1.25, 3.0])
    w.add_array("test.bools", [True, False])
    w.add_array("test.strings", ["a", "", "ü\u2581b", "<|im_end|>"])
    w.add_array("test.empty", [])
    w.add_custom_alignment(64)
    rng = np.random.default_rng(0)
    w.add_tensor("a.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b.weight", rng.standard_normal((4, 8)).astype(np.float16))
    w.add_tensor("c.weight", rng.integers(0, 256, (2, 34 * 2), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("d.weight", rng.integers(0, 256, (3, 20), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_every_value_type_and_tensor_as_gguf_reads_them(tmp_path):
    ours = _same(_write(tmp_path / "m.gguf"))
    assert ours.metadata["test.strings"] == ["a", "", "ü\u2581b", "<|im_end|>"]
    assert ours.tensors[2].shape == (64, 2) and ours.tensors[2].data.shape == (2, 68)


def test_a_big_endian_file_as_gguf_reads_it(tmp_path):
    path = _write(tmp_path / "be.gguf", gguf.GGUFEndian.BIG)
    with pytest.raises(ValueError):  # our own parser leaves it to gguf's reader
        gguf_file._read(path)
    _same(path)


def test_a_damaged_file_raises_gguf_s_error(tmp_path):
    whole = open(_write(tmp_path / "m.gguf"), "rb").read()
    for n in (3, 40, 300, len(whole) - 10):
        path = tmp_path / f"cut{n}.gguf"
        path.write_bytes(whole[:n])
        with pytest.raises(Exception) as ours:
            gguf_file.read(str(path))
        with pytest.raises(Exception) as theirs:
            gguf.GGUFReader(str(path))
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value)), n


@pytest.mark.real_model
def test_the_shipped_file_as_gguf_reads_it():
    import neuronjax

    ours = _same(neuronjax.default_model_path())
    assert len(ours.metadata["tokenizer.ggml.tokens"]) == 49152 and os.path.exists(ours.path)
