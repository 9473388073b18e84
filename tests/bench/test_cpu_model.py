"""`bench.cpu_model`: the CPU named in the benchmarks' records."""

import platform

from neuronjax.bench import cpu_model


def test_reads_the_model_name_of_proc_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 167\n"
                 "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512f\n\n"
                 "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n")  # fmt: skip
    assert cpu_model(str(f)) == "Intel(R) Xeon(R) Processor"


def test_without_the_file_or_the_line_it_asks_the_platform(tmp_path):
    assert cpu_model(str(tmp_path / "absent")) == platform.processor()
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel\t\t: 167\n")  # "model" is not "model name"
    assert cpu_model(str(f)) == platform.processor()
