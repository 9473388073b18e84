"""`neuronjax bench profile`: the trace is read back into operation times, summed by kind, and every
listed operation is found in the compiled program it came from."""

import json
import subprocess
import sys

import pytest

from neuronjax.attribution import engine
from neuronjax.bench.profile import parse_layer_steps
from neuronjax.bench.trace import (by_kind, calls_of, hlo_instructions, kind_of, operation_times, product_instructions,
                                   wall_clock)
from tests import as_a_user_runs_it


def test_operations_are_summed_by_kind_by_hand():
    events = [  # one after the other on one thread, inside runtime wrappers that are not operations
        {"ph": "X", "name": "ynn_fusion", "ts": 0.0, "dur": 30.0, "tid": 1},
        {"ph": "X", "name": "ynn_fusion.93", "ts": 30.0, "dur": 50.0, "tid": 1},
        {"ph": "X", "name": "ynn_fusion.93", "ts": 80.0, "dur": 10.0, "tid": 1},
        {"ph": "X", "name": "dynamic-slice_bitcast_fusion.12", "ts": 90.0, "dur": 10.0, "tid": 1},
        {"ph": "X", "name": "ThunkExecutor::Execute", "ts": 0.0, "dur": 500.0, "tid": 1},  # a wrapper
        {"ph": "X", "name": "$api.py:2479 block_until_ready", "ts": 0.0, "dur": 400.0, "tid": 2},  # a Python frame
        {"ph": "X", "name": "PjitFunction(compute_prefix_head)", "ts": 0.0, "dur": 300.0, "tid": 2},  # a host dispatch
        {"ph": "X", "name": "CommonPjRtClient::CreateOutputs", "ts": 0.0, "dur": 20.0, "tid": 1},  # the runtime's
        {"ph": "X", "name": "DevicePut", "ts": 0.0, "dur": 70.0, "tid": 2},
        {"ph": "i", "name": "ynn_fusion.1", "ts": 0.0, "dur": 99.0, "tid": 1},  # not a complete event
    ]
    ops = operation_times(events)
    assert ops == {"ynn_fusion": (30.0, 1), "ynn_fusion.93": (60.0, 2), "dynamic-slice_bitcast_fusion.12": (10.0, 1)}
    kinds = by_kind(ops)
    assert [k["kind"] for k in kinds] == ["ynn_fusion", "dynamic-slice_bitcast_fusion"]
    assert kinds[0]["ms"] == pytest.approx(0.09) and kinds[0]["calls"] == 3 and kinds[0]["operations"] == 2
    assert kinds[0]["share"] == pytest.approx(0.9) and kinds[1]["share"] == pytest.approx(0.1)
    assert kind_of("fusion.3.12") == "fusion" and kind_of("copy") == "copy"
    assert parse_layer_steps("0=32; -1=8") == {0: 32, -1: 8} and parse_layer_steps("") == {}
    with pytest.raises(SystemExit, match="--layer-steps"):
        parse_layer_steps("0:32")


def test_a_loop_counts_only_its_own_time_when_its_body_runs_on_its_thread():
    """On one core a ``while`` encloses its body's operations on the same thread; each counts its
    own time once. An operation on another thread at the same time is not nested in it."""
    events = [
        {"ph": "X", "name": "while.3", "ts": 100.0, "dur": 100.0, "tid": 7},
        {"ph": "X", "name": "ynn_fusion.2", "ts": 110.0, "dur": 30.0, "tid": 7},  # body, first iteration
        {"ph": "X", "name": "copy.4", "ts": 140.0, "dur": 5.0, "tid": 7},
        {"ph": "X", "name": "ynn_fusion.2", "ts": 150.0, "dur": 30.0, "tid": 7},  # second iteration
        {"ph": "X", "name": "while.9", "ts": 152.0, "dur": 4.0, "tid": 7},  # a loop nested in the body op's span
        {"ph": "X", "name": "ynn_fusion.5", "ts": 100.0, "dur": 80.0, "tid": 8},  # another thread, concurrent
        {"ph": "X", "name": "copy.4", "ts": 195.0, "dur": 10.0, "tid": 7},  # runs past the loop's end (clock skew)
        {"ph": "X", "name": "copy.4", "ts": 300.0, "dur": 2.0, "tid": 7},  # after the loop
    ]
    ops = operation_times(events)
    # while.3: 100 - 30 - 5 - 30 - the 5 of the last copy inside it = 30; ynn_fusion.2: 60 - the nested 4
    assert ops["while.3"] == (30.0, 1)
    assert ops["ynn_fusion.2"] == (56.0, 2) and ops["while.9"] == (4.0, 1)
    assert ops["copy.4"] == (17.0, 3) and ops["ynn_fusion.5"] == (80.0, 1)
    # the thread's own times add up to its busy span: 100 for the loop, 2 after it, 5 past its end
    assert sum(t for k, (t, _) in ops.items() if k != "ynn_fusion.5") == pytest.approx(107.0)


def test_hlo_instructions_give_shape_and_source():
    text = (
        '  %ynn_fusion.94 = f32[448,576]{1,0} fusion(%a, %b), kind=kCustom, metadata={op_name="jit(f)/dot_general"}\n'
        "  ROOT %tuple.3 = (f32[2]{0}) tuple(%x)\n"
    )
    got = hlo_instructions(text)
    assert got["ynn_fusion.94"] == ("f32[448,576]{1,0}", "jit(f)/dot_general")
    assert got["tuple.3"] == ("(f32[2]{0})", "")


def test_operations_of_several_programs_keep_their_programs_names():
    """An IG call runs the prompt pass and the replay as two programs whose instruction names
    repeat: a trace that names the program keys each operation by both, and the compiled text's
    module name gives the same keys."""
    events = [
        {"ph": "X", "name": "ynn_fusion.1", "ts": 0.0, "dur": 5.0, "tid": 1, "args": {"hlo_module": "jit_a"}},
        {"ph": "X", "name": "ynn_fusion.1", "ts": 10.0, "dur": 7.0, "tid": 1, "args": {"hlo_module": "jit_b"}},
        {"ph": "X", "name": "copy.2", "ts": 20.0, "dur": 1.0, "tid": 1},
    ]
    ops = operation_times(events)
    assert ops == {"jit_a/ynn_fusion.1": (5.0, 1), "jit_b/ynn_fusion.1": (7.0, 1), "copy.2": (1.0, 1)}
    assert [(k["kind"], k["calls"]) for k in by_kind(ops)] == [("ynn_fusion", 2), ("copy", 1)]
    text = "HloModule jit_b, entry_computation_layout={()->f32[2]{0}}\n  %ynn_fusion.1 = f32[8,4]{1,0} fusion(%a)\n"
    assert hlo_instructions(text) == {"jit_b/ynn_fusion.1": ("f32[8,4]{1,0}", "")}


def test_wall_clock_splits_the_call_by_what_runs_by_hand():
    """Each instant of the call is a product's (some product runs on some thread), the other
    operations' (shared evenly among the innermost ones running), or nobody's."""
    events = [
        {"ph": "X", "name": "while.1", "ts": 0.0, "dur": 20.0, "tid": 1},  # its body runs on its thread
        {"ph": "X", "name": "ynn_fusion.2", "ts": 0.0, "dur": 10.0, "tid": 1},  # a product, in the body
        {"ph": "X", "name": "add_fusion.3", "ts": 12.0, "dur": 4.0, "tid": 1},  # in the body
        {"ph": "X", "name": "fusion.6", "ts": 4.0, "dur": 2.0, "tid": 2},  # a product beside the first
        {"ph": "X", "name": "copy_fusion.4", "ts": 8.0, "dur": 6.0, "tid": 2},
        {"ph": "X", "name": "copy_fusion.5", "ts": 24.0, "dur": 1.0, "tid": 2},
        {"ph": "X", "name": "ThunkExecutor::Execute", "ts": 0.0, "dur": 90.0, "tid": 3},  # not an operation
    ]
    w = wall_clock(events, {"ynn_fusion.2", "fusion.6"})
    # products 0-10 (two of them 4-6); then 10-12 the loop and the copy (1 each), 12-14 the add and
    # the copy (1 each), 14-16 the add, 16-20 the loop alone, 20-24 nothing, 24-25 the copy
    assert w["product_ms"] * 1e3 == pytest.approx(10.0) and w["products_side_by_side_ms"] * 1e3 == pytest.approx(2.0)
    assert w["other_ms"] * 1e3 == pytest.approx(11.0) and w["idle_ms"] * 1e3 == pytest.approx(4.0)
    assert w["wall_ms"] * 1e3 == pytest.approx(25.0)
    assert [(k["kind"], round(k["ms"] * 1e3, 6)) for k in w["other_kinds"]] == [
        ("while", 5.0), ("add_fusion", 3.0), ("copy_fusion", 3.0)]  # fmt: skip
    assert w["other_kinds"][0]["share"] == pytest.approx(5.0 / 25.0)
    assert wall_clock([], set())["wall_ms"] == 0.0
    # an operation of a kind that also holds products is named apart
    w = wall_clock(events, {"fusion.6", "copy_fusion.9"})
    # (now ynn_fusion.2 is not a product: the copies run 8-14 beside one other operation, and 24-25)
    assert ("copy_fusion (no product)", 4.0) in [(k["kind"], round(k["ms"] * 1e3, 6)) for k in w["other_kinds"]]


def test_products_are_the_dots_and_the_fusions_holding_one():
    text = """HloModule jit_f, entry_computation_layout={(f32[4,4]{1,0})->f32[4]{0}}

%fused_computation.1 (param_0: f32[4,4], param_1: f32[4,4]) -> f32[4,4] {
  %param_0 = f32[4,4]{1,0} parameter(0)
  %param_1 = f32[4,4]{1,0} parameter(1)
  ROOT %dot.1 = f32[4,4]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_computation.2 (param_0.1: f32[4,4]) -> f32[4] {
  %param_0.1 = f32[4,4]{1,0} parameter(0)
  %constant.2 = f32[] constant(0)
  ROOT %reduce.1 = f32[4]{0} reduce(%param_0.1, %constant.2), dimensions={1}, to_apply=%region_0
}

%fused_computation.3 (param_0.2: f32[4,4]) -> (f32[4,4], f32[4]) {
  %param_0.2 = f32[4,4]{1,0} parameter(0)
  %convolution.1 = f32[4,4]{1,0} convolution(%param_0.2, %param_0.2), dim_labels=bf_io->bf
  %constant.3 = f32[] constant(0)
  %reduce.2 = f32[4]{0} reduce(%convolution.1, %constant.3), dimensions={1}, to_apply=%region_0
  ROOT %tuple.1 = (f32[4,4]{1,0}, f32[4]{0}) tuple(%convolution.1, %reduce.2)
}

ENTRY %main.3 (x: f32[4,4]) -> f32[4] {
  %x = f32[4,4]{1,0} parameter(0)
  %ynn_fusion = f32[4,4]{1,0} fusion(%x, %x), kind=kCustom, calls=%fused_computation.1
  %ynn_fusion.1 = f32[4]{0} fusion(%ynn_fusion), kind=kCustom, calls=%fused_computation.2
  %fusion.4 = (f32[4,4]{1,0}, f32[4]{0}) fusion(%x), kind=kOutput, calls=%fused_computation.3
  %dot.7 = f32[4,4]{1,0} dot(%x, %x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %add.1 = f32[4]{0} add(%ynn_fusion.1, %ynn_fusion.1)
}
"""
    got = product_instructions(text)
    assert {"jit_f/ynn_fusion", "jit_f/fusion.4", "jit_f/dot.7"} <= got
    assert not {"jit_f/ynn_fusion.1", "jit_f/add.1", "jit_f/x", "jit_f/reduce.1"} & got


def test_calls_of_counts_each_call_once_though_its_events_nest():
    def pjit(name, ts, dur, tid=1):
        return {"ph": "X", "name": f"PjitFunction({name})", "ts": ts, "dur": dur, "pid": 7, "tid": tid}

    events = [
        pjit("_attribute", 0, 100), pjit("_attribute", 1, 98),  # one call: an outer event and its inner one
        pjit("_attribute", 150, 50), pjit("_attribute", 151, 48), pjit("_attribute", 152, 10),
        pjit("_attribute", 120, 20, tid=2),  # a call on another thread, overlapping none of its own
        pjit("compute_prefix_head", 10, 5), {"ph": "i", "name": "PjitFunction(_attribute)", "ts": 300},
        {"ph": "X", "name": "ynn_fusion.3", "ts": 2, "dur": 5, "pid": 7, "tid": 1},
    ]
    assert calls_of(events, "_attribute") == 3
    assert calls_of(events, "compute_prefix_head") == 1 and calls_of(events, "other") == 0
    # back to back: a call that starts where the previous one ended is a call of its own
    assert calls_of([pjit("f", 0, 10), pjit("f", 10, 5)], "f") == 2


@pytest.mark.real_model
def test_profile_of_a_small_call_names_its_matrix_products(tmp_path):
    out = tmp_path / "profile.json"
    # 996 nodes on layer 0: 1,025 replay rows per prompt, so the row budget alone would split the two prompts
    # into two calls (`engine.auto_chunk`); the profile runs them as the one call whose program it reads
    argv = ["--prompts", "2", "--steps", "1", "--layer-steps", "0=996", "--groups", "2", "--top", "5",
            "--calls", "2", "--matmul-rounds", "1", "--json", str(out), "--hlo", str(tmp_path / "programs.hlo")]  # fmt: skip
    # where the time goes is the subject: the programs compiled as a user's are, in a process of its own
    done = subprocess.run([sys.executable, "-m", "neuronjax.cli", "bench", "profile", *argv],
                          env=as_a_user_runs_it(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert sum(k["ms"] for k in r["kinds"]) == pytest.approx(r["operations_ms"])
    assert sum(k["share"] for k in r["kinds"]) == pytest.approx(1.0)
    # every listed operation is an instruction of the compiled program (the trace's names map onto it)
    assert len(r["top"]) == 5 and all(t["shape"] != "?" for t in r["top"])
    # --hlo: the programs' text, where each listed operation is defined (its operands, layouts)
    hlo = (tmp_path / "programs.hlo").read_text()
    for t in r["top"]:
        assert f"%{t['operation'].split('/')[-1]} = " in hlo, t["operation"]
    # and on this model the time is in the matrix products (the wall clock's split below): the largest operations
    # include them, the largest named by the JAX product it came from (a buffer the compiler fills before a loop has
    # no JAX operation: on a loaded machine its first touch can outlast any one product)
    products = [t for t in r["top"] if t["product"]]
    assert products and "dot_general" in products[0]["source"], r["top"]
    assert r["gflop"] > 0 and len(r["call_s"]) == 2 and min(r["call_s"]) > 0 and r["schedule"] == [996] + [1] * 29
    assert engine.auto_chunk(2, engine.replay_rows(r["schedule"], 2, r["replay"]), "cpu") == 1
    assert r["ig_calls_traced"] == 1
    readings = r["matmul_gflop_per_s"]
    assert sorted(readings) == ["jnp.dot", "numpy"] and all(len(v) == 2 for v in readings.values())
    assert r["matmul_limit_gflop_per_s"] == max(max(v) for v in readings.values())
    assert r["fraction_of_limit"] == pytest.approx(r["gflop_per_s"] / r["matmul_limit_gflop_per_s"])
    # the wall clock: its three parts add up to it, and a call of this model spends most of it in products
    w = r["wall_clock"]
    assert w["product_ms"] + w["other_ms"] + w["idle_ms"] == pytest.approx(w["wall_ms"])
    assert sum(k["ms"] for k in w["other_kinds"]) == pytest.approx(w["other_ms"])
    assert w["product_ms"] > w["other_ms"] and w["wall_ms"] <= 1e3 * r["traced_call_s"]
    # the products' rate while one runs: the call's FLOPs over that time, so at least over the whole traced call
    assert w["product_gflop_per_s"] == pytest.approx(r["gflop"] / (w["product_ms"] / 1e3))
    assert w["product_gflop_per_s"] >= r["gflop"] / r["traced_call_s"]
    printed = done.stdout
    line = next(x for x in printed.splitlines() if "a matrix product running" in x)
    assert "{" not in line and f"{w['product_gflop_per_s']:.1f} GFLOP/s while one runs" in line
    assert "| kind | ms | share |" in printed and "| shape | product | from |" in printed
    assert "neuronjax bench profile --prompts 2" in printed
