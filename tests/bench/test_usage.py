"""`bench.timed_calls`' readings of each timed call: the kernel's time, page faults, stolen time."""

import ctypes
import mmap
import os
import time

import pytest

from neuronjax.bench import steal_seconds, timed_calls, usage_between, usage_now


def test_steal_is_the_eighth_number_of_the_cpu_line_in_seconds(tmp_path):
    f = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")
    f.write_text(f"cpu  3260626 0 329941 2794680 5207 0 1090 {7 * tick} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert steal_seconds(str(f)) == 7.0
    f.write_text("cpu  1 2 3 4\n")  # an old kernel's line, before the steal column
    assert steal_seconds(str(f)) is None
    assert steal_seconds(str(tmp_path / "absent")) is None


def test_usage_between_subtracts_and_keeps_an_unknown_steal_unknown():
    a = {"user_s": 1.0, "kernel_s": 0.5, "page_faults": 10, "steal_s": None}
    b = {"user_s": 3.5, "kernel_s": 0.75, "page_faults": 25, "steal_s": 4.0}
    assert usage_between(a, b) == {"user_s": 2.5, "kernel_s": 0.25, "page_faults": 15, "steal_s": None}
    assert usage_between(dict(a, steal_s=1.0), b)["steal_s"] == 3.0


def test_each_timed_call_gets_its_own_reading():
    # the kernel maps fresh pages for a new anonymous mapping whatever the C allocator keeps or reuses
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = 64 << 20
    calls = []

    def call():  # first touch of 64 MiB freshly mapped: at least 32 faults (2 MiB pages)
        calls.append(1)
        if len(calls) == 3:  # the second timed call: only sleeps
            time.sleep(0.2)
            return None
        buf = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        assert buf not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        ctypes.memset(buf, 1, size)
        libc.munmap(buf, size)
        return len(calls)

    usage: list = []
    first, _, times = timed_calls(call, 2, usage=usage)
    assert first == 1 and len(times) == 2 and len(usage) == 2
    touched, slept = usage
    assert touched["page_faults"] >= 32
    # 64 MiB of 4 KiB pages fault 16,384 times; the sleeping call touches next to nothing
    assert slept["page_faults"] < touched["page_faults"]
    assert slept["user_s"] + slept["kernel_s"] < 0.1 < times[1]
    for u in usage:
        assert set(u) == {"user_s", "kernel_s", "page_faults", "steal_s"}
        assert u["steal_s"] is None or u["steal_s"] >= 0


def test_without_a_list_nothing_is_read(monkeypatch):
    import neuronjax.bench as bench

    monkeypatch.setattr(bench, "usage_now", lambda: pytest.fail("read without being asked"))
    assert bench.timed_calls(lambda: 3, 2)[0] == 3


def test_usage_now_reads_this_process():
    u = usage_now()
    assert u["user_s"] > 0 and u["page_faults"] > 0
