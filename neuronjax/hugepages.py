"""Transparent huge pages for the runtime's buffers on Linux (the `neuronjax` command sets it up).

XLA's CPU runtime takes a compiled call's large buffers from the C allocator, and glibc maps
buffers that large freshly for every call: the kernel then faults their pages in one 4 KiB page
at a time on first touch, about 143,000 faults per IG call of 8 prompts on SmolLM2 (0.3 s of
kernel time in a 1.5-1.8 s call on 2 cores). glibc's tunable ``glibc.malloc.hugetlb=1`` (glibc
2.35 and later) makes the allocator advise the kernel to back those mappings with transparent
huge pages (2 MiB), which takes the faults to under a thousand per call. Measured on the 2-core
Zen 5 machine, 2026-12-01 (docs/performance.md, "The allocator's huge pages"): the default nodes'
IG call of 8 prompts 0.97-1.24x faster with it (median 1.12x; faster in 10 of 11 alternations
of a process with and without it), m = 16 calls of 4 prompts 0.94-1.14x (median 1.08x, faster
in 5 of 8); when the machine's page faults were cheap (early that evening) it gained nothing.

glibc reads its tunables once, when the process starts, so the setting cannot be made from
Python after the fact: `reexec` runs the same command again with ``GLIBC_TUNABLES`` extended.
The `neuronjax` command does that first thing for its subcommands that run a model (`cli.COMPUTE`;
Python imports the package, and JAX with it, twice: about 2 s more at the start) unless:

- ``NEURONJAX_HUGE_PAGES=0`` is set (opt out);
- the C library is not glibc 2.35 or later, or the system is not Linux;
- transparent huge pages are off (``/sys/kernel/mm/transparent_hugepage/enabled`` reads ``[never]``);
- ``GLIBC_TUNABLES`` already names ``glibc.malloc.hugetlb`` (a choice already made, or the
  process is the re-run itself).

From Python (a notebook, a script), start the interpreter with the variable set:
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python script.py``; `enabled` says whether it is on.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, Optional, Sequence

TUNABLE = "glibc.malloc.hugetlb"
SETTING = TUNABLE + "=1"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
OPT_OUT = "NEURONJAX_HUGE_PAGES"


def _glibc_at_least(version: str, want=(2, 35)) -> bool:
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return len(parts) == 2 and parts >= want


def _thp_mode(path: str = THP_ENABLED) -> Optional[str]:
    """The bracketed mode of the kernel's transparent huge pages ("always", "madvise", "never"),
    or None when the file cannot be read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether this process's glibc was started with the huge-page tunable."""
    environ = os.environ if environ is None else environ
    return any(t.strip() == SETTING for t in environ.get("GLIBC_TUNABLES", "").split(":"))


def tuned_environ(environ: Optional[Mapping[str, str]] = None, libc: Optional[tuple] = None,
                  system: Optional[str] = None, thp: Optional[str] = "unread") -> Optional[dict]:  # fmt: skip
    """The environment to re-run with (``GLIBC_TUNABLES`` extended by ``glibc.malloc.hugetlb=1``),
    or None when the module docstring's conditions say not to. The arguments stand in for the
    process's own (tests)."""
    environ = dict(os.environ if environ is None else environ)
    libc = platform.libc_ver() if libc is None else libc
    system = platform.system() if system is None else system
    thp = _thp_mode() if thp == "unread" else thp
    if environ.get(OPT_OUT, "1").strip() == "0" or system != "Linux":
        return None
    if libc[0] != "glibc" or not _glibc_at_least(libc[1]) or thp in (None, "never"):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in current:
        return None
    environ["GLIBC_TUNABLES"] = f"{current}:{SETTING}" if current else SETTING
    return environ


def reexec(args: Sequence[str]) -> None:
    """Replace this process by ``python args...`` under `tuned_environ`; return (doing nothing)
    when that is None. Call it before anything else has started (threads, files)."""
    env = tuned_environ()
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *args], env)
