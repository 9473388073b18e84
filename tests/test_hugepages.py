"""The allocator's huge pages (`neuronjax.hugepages`): when the `neuronjax` command starts again
with them, and that a process started that way faults a large buffer in far fewer pages."""

import subprocess
import sys

import pytest

from neuronjax import cli, hugepages

LINUX = dict(libc=("glibc", "2.36"), system="Linux", thp="madvise")


def test_tuned_environ_adds_the_tunable_where_it_applies():
    env = hugepages.tuned_environ({"PATH": "/bin"}, **LINUX)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert hugepages.enabled(env) and not hugepages.enabled({"PATH": "/bin"})
    # other tunables are kept, ours appended
    env = hugepages.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}, **LINUX)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1"
    assert hugepages.enabled(env)
    assert hugepages.tuned_environ({}, **dict(LINUX, thp="always"))["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, changes", [
    ({"NEURONJAX_HUGE_PAGES": "0"}, {}),  # opted out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, {}),  # a choice already made
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, {}),  # already on: the re-run itself
    ({}, {"system": "Darwin"}),
    ({}, {"libc": ("", "")}),  # not glibc (musl)
    ({}, {"libc": ("glibc", "2.34")}),  # before the tunable
    ({}, {"thp": "never"}),  # the kernel's huge pages off
    ({}, {"thp": None}),  # no such kernel setting
])  # fmt: skip
def test_tuned_environ_leaves_the_process_alone(environ, changes):
    assert hugepages.tuned_environ(environ, **dict(LINUX, **changes)) is None


def test_the_command_starts_again_for_the_subcommands_that_run_models(monkeypatch):
    calls = []
    monkeypatch.setattr(hugepages, "reexec", lambda args: calls.append(list(args)))
    monkeypatch.setattr(sys, "argv", ["neuronjax", "bench", "layer", "--rounds", "0"])
    with pytest.raises(SystemExit):  # the bench's own argument check, after the (recorded) re-run
        cli.main()
    assert calls == [["-m", "neuronjax", "bench", "layer", "--rounds", "0"]]
    calls.clear()
    monkeypatch.setattr(sys, "argv", ["neuronjax", "info", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert calls == []  # a quick command starts once
    with pytest.raises(SystemExit):
        cli.main(["bench", "layer", "--rounds", "0"])  # called from Python: never replaced
    assert calls == []


CHILD = """
import ctypes, os, resource
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
buf = libc.malloc(256 << 20)  # the C allocator, as XLA's runtime takes its buffers
ctypes.memset(buf, 1, 256 << 20)  # first touch of 65,536 pages of 4 KiB
print(os.environ.get("GLIBC_TUNABLES", "-"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(hugepages.tuned_environ() is None and not hugepages.enabled(),
                    reason="glibc before 2.35, not Linux, or the kernel's transparent huge pages are off")  # fmt: skip
def test_a_process_started_again_faults_a_large_buffer_in_huge_pages():
    launch = "import sys; from neuronjax import hugepages; hugepages.reexec(['-c', sys.argv[1]]); exec(sys.argv[1])"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES", "NEURONJAX_HUGE_PAGES")}
    out = subprocess.run([sys.executable, "-c", launch, CHILD], env=env, capture_output=True, text=True, check=True)
    tunables, faults = out.stdout.split()[-2:]
    assert "glibc.malloc.hugetlb=1" in tunables
    plain = subprocess.run([sys.executable, "-c", launch, CHILD], env=dict(env, NEURONJAX_HUGE_PAGES="0"),
                           capture_output=True, text=True, check=True)  # fmt: skip
    plain_faults = int(plain.stdout.split()[-1])
    # 4 KiB pages: one fault per page of the 256 MiB; 2 MiB pages: 128 of them, plus the odd small page
    assert plain_faults >= 60_000
    assert int(faults) < 5_000
