"""The launch scripts (launch/*.sh, launch/slurm.sbatch), run with bash: the exact dry-run lines,
flag errors, and the commands actually run, with fake gcloud / sbatch / scontrol / srun on PATH
where the real ones would be. local.sh also really starts processes. No JAX, no cluster."""

import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from tests import ROOT as REPO

LAUNCH = os.path.join(REPO, "launch")
LOCAL = os.path.join(LAUNCH, "local.sh")
SLURM = os.path.join(LAUNCH, "slurm.sh")
SBATCH = os.path.join(LAUNCH, "slurm.sbatch")
TPU = os.path.join(LAUNCH, "tpu_pod.sh")

PY = sys.executable
RUN = ["neuronjax", "run", "configs/default.yaml", "name=my run", "identify.k=50"]
RUN_Q = "neuronjax run configs/default.yaml 'name=my run' identify.k=50"
# Words that need every kind of quoting; each must reach the command unchanged.
AWKWARD = [
    "name=my run",
    "it's",
    'say "hi"',
    "$HOME and `date` and \\",
    "bang!",
    "both ' and \" !",
    "tab\there",
    "new\nline",
    "",
    "*",
    "~",
    "é ü",
]
# Prints its arguments as JSON: the command whose arguments the tests check.
ARGV = [PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def clean_env(**extra):
    """os.environ without the variables the scripts read (the test session sets XLA_FLAGS)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEURONJAX_", "SLURM_")) and k not in ("XLA_FLAGS", "JAX_PLATFORMS")
    }
    env.update(extra)
    return env


BASH = shutil.which("bash")


def bash(*args, env=None, timeout=30):
    return subprocess.run(
        [BASH, *args], check=False, capture_output=True, text=True, env=env or clean_env(), timeout=timeout, cwd=REPO
    )


def lines(out):
    return out.splitlines()


def fake_tool(bindir, name, body):
    """An executable `name` in bindir: a Python script with the given body."""
    path = os.path.join(bindir, name)
    with open(path, "w") as f:
        f.write(f"#!{PY}\nimport json, os, sys\n{body}\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def path_with(bindir, env=None):
    env = env or clean_env()
    env["PATH"] = bindir + os.pathsep + env["PATH"]
    return env


def recorder(bindir, name, then=""):
    """A fake `name` that appends its argv (as JSON) to bindir/name.log (LOG), then runs the
    Python lines `then`; returns the reader of the log."""
    log = os.path.join(bindir, f"{name}.log")
    fake_tool(bindir, name, f"LOG = {log!r}\nopen(LOG, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n{then}")

    def calls():
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return [json.loads(line) for line in f]

    return calls


# --- every script: help, missing and unknown flags ---------------------------------------------

REQUIRED = {
    LOCAL: (["--dry-run", "--", "true"], "-n"),
    SLURM: (["--dry-run", "--", "true"], "--nodes"),
    TPU: (["--zone", "z", "--dry-run", "--", "true"], "--tpu"),
}


@pytest.mark.parametrize("script", [LOCAL, SLURM, TPU], ids=os.path.basename)
def test_help(script):
    r = bash(script, "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: " + os.path.basename(script)), r


@pytest.mark.parametrize("script", [LOCAL, SLURM, TPU], ids=os.path.basename)
def test_missing_required_flag(script):
    args, flag = REQUIRED[script]
    r = bash(script, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert f"missing required flag {flag} " in r.stderr


@pytest.mark.parametrize("script", [LOCAL, SLURM, TPU], ids=os.path.basename)
def test_unknown_flag(script):
    r = bash(script, "--frobnicate", "3", "--dry-run", "--", "true")
    assert r.returncode == 2 and r.stdout == ""
    assert "unknown flag: --frobnicate" in r.stderr


@pytest.mark.parametrize(
    "script, args, message",
    [
        (LOCAL, ["-n"], "-n needs a value"),
        (LOCAL, ["-n", "--dry-run", "--", "true"], "-n needs a value"),
        (LOCAL, ["-n", "two", "--", "true"], "-n expects a whole number >= 1, got 'two'"),
        (LOCAL, ["-n", "0", "--", "true"], "-n expects a whole number >= 1, got '0'"),
        (LOCAL, ["-n", "2", "--port", "70000", "--", "true"], "--port expects a port number up to 65535"),
        (LOCAL, ["-n", "2", "--devices-per-process", "x", "--", "true"], "--devices-per-process expects"),
        (LOCAL, ["-n", "2", "--dry-run"], "no command given after --"),
        (LOCAL, ["-n", "2", "true"], "unexpected argument 'true' (the command goes after --)"),
        (SLURM, ["--nodes", "2", "--gpus-per-node", "-1", "--", "true"], "--gpus-per-node needs a value"),
        (SLURM, ["--nodes", "2", "--dry-run"], "no command given after --"),
        (SLURM, ["--nodes", "2", "--time"], "--time needs a value"),
        (TPU, ["--tpu", "t", "--", "true"], "missing required flag --zone"),
        (TPU, ["--tpu", "t", "--zone", "z", "--env", "1X=2", "--", "true"], "--env expects KEY=VALUE, got '1X=2'"),
        (TPU, ["--tpu", "t", "--zone", "z", "--env", "X", "--", "true"], "--env expects KEY=VALUE, got 'X'"),
        (TPU, ["--tpu", "t", "--zone", "z", "--dry-run"], "no command given after --"),
        (TPU, ["--tpu", "t", "--zone", "z", "--workdir", "~bob/x", "--", "true"], "--workdir: give a path"),
    ],
)
def test_bad_values(script, args, message):
    r = bash(script, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert message in r.stderr


# --- local.sh --------------------------------------------------------------------------------


def test_local_dry_run():
    r = bash(LOCAL, "-n", "2", "--port", "1234", "--dry-run", "--", *RUN)
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [
        f"NEURONJAX_COORDINATOR=127.0.0.1:1234 NEURONJAX_NUM_PROCESSES=2 NEURONJAX_PROCESS_ID={i} {RUN_Q}"
        for i in range(2)
    ]


def test_local_dry_run_devices_keep_other_xla_flags():
    env = clean_env(XLA_FLAGS="--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
    r = bash(LOCAL, "--num-processes=3", "--devices-per-process=4", "--dry-run", "--", *RUN, env=env)
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [
        f"NEURONJAX_COORDINATOR=127.0.0.1:8476 NEURONJAX_NUM_PROCESSES=3 NEURONJAX_PROCESS_ID={i} "
        f"JAX_PLATFORMS=cpu XLA_FLAGS='--xla_cpu_foo=1 --xla_force_host_platform_device_count=4' {RUN_Q}"
        for i in range(3)
    ]
    r = bash(LOCAL, "-n", "1", "--devices-per-process", "2", "--dry-run", "--", "true")
    assert lines(r.stdout) == [
        (
            "NEURONJAX_COORDINATOR=127.0.0.1:8476 NEURONJAX_NUM_PROCESSES=1 NEURONJAX_PROCESS_ID=0 "
            "JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 true"
        )
    ]


def test_local_dry_run_lines_paste_back():
    """Each printed line, run by bash, gives the command exactly its arguments and variables."""
    show = [PY, "-c", "import json, os, sys; print(json.dumps([os.environ['NEURONJAX_PROCESS_ID'], sys.argv[1:]]))"]
    r = bash(LOCAL, "-n", "2", "--dry-run", "--", *show, *AWKWARD)
    assert r.returncode == 0, r.stderr
    printed = lines(r.stdout)
    assert len(printed) == 2
    for i, line in enumerate(printed):
        out = subprocess.run([BASH, "-c", line], capture_output=True, text=True, env=clean_env(), check=True)
        assert json.loads(out.stdout) == [str(i), AWKWARD]


def test_local_runs_processes_with_prefixed_output():
    show = [
        PY,
        "-c",
        (
            "import os; print(os.environ['NEURONJAX_PROCESS_ID'], os.environ['NEURONJAX_NUM_PROCESSES'],"
            " os.environ['NEURONJAX_COORDINATOR'])"
        ),
    ]
    r = bash(LOCAL, "-n", "2", "--port", "23456", "--", *show)
    assert r.returncode == 0, r.stderr
    assert sorted(lines(r.stdout)) == ["[0] 0 2 127.0.0.1:23456", "[1] 1 2 127.0.0.1:23456"]


def test_local_run_passes_arguments_devices_and_stderr():
    show = [
        PY,
        "-c",
        (
            "import json, os, sys; print(json.dumps([os.environ['JAX_PLATFORMS'], os.environ['XLA_FLAGS'], sys.argv[1:]]));"
            " print('to stderr', file=sys.stderr)"
        ),
    ]
    r = bash(LOCAL, "-n", "2", "--devices-per-process", "3", "--", *show, *AWKWARD)
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)
    assert len(out) == 4
    assert sorted(line for line in out if line.endswith("stderr")) == ["[0] to stderr", "[1] to stderr"]
    for i in range(2):
        (mine,) = [line for line in out if line.startswith(f"[{i}] [")]
        assert json.loads(mine[4:]) == ["cpu", "--xla_force_host_platform_device_count=3", AWKWARD]


def _gone(pid):
    """True when the process no longer runs (gone, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_local_failure_stops_the_others_and_returns_its_code():
    script = 'echo "pid $$"; if [ "$NEURONJAX_PROCESS_ID" = 1 ]; then sleep 0.3; exit 3; fi; exec sleep 60'
    t0 = time.monotonic()
    r = bash(LOCAL, "-n", "3", "--", "bash", "-c", script)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert time.monotonic() - t0 < 20  # not the 60 s of the others
    pids = {line.split()[0]: int(line.split()[-1]) for line in lines(r.stdout) if " pid " in line}
    assert sorted(pids) == ["[0]", "[1]", "[2]"]
    if os.path.isdir("/proc"):
        deadline = time.monotonic() + 5
        while not all(_gone(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(p) for p in pids.values())


def test_local_missing_command_fails_with_127():
    r = bash(LOCAL, "-n", "2", "--", "neuronjax-no-such-command")
    assert r.returncode == 127
    assert sorted(line[:4] for line in lines(r.stdout)) == ["[0] ", "[1] "]


# --- slurm.sh ----------------------------------------------------------------------------------

SLURM_FLAGS = [
    "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu", "--time", "04:00:00",
    "--account", "proj", "--job-name", "nj-test", "--output", "logs/%x-%j.out",
]  # fmt: skip
SBATCH_ARGS = [
    "sbatch", "--job-name=nj-test", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8",
    "--partition=gpu", "--time=04:00:00", "--account=proj", "--output=logs/%x-%j.out",
]  # fmt: skip


def test_slurm_dry_run():
    r = bash(SLURM, *SLURM_FLAGS, "--dry-run", "--", *RUN)
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [" ".join(SBATCH_ARGS) + f" {SBATCH} {RUN_Q}"]


def test_slurm_dry_run_minimal_and_extras():
    r = bash(SLURM, "--nodes=4", "--dry-run", "--", "neuronjax", "run", "c.yaml")
    assert lines(r.stdout) == [
        f"sbatch --job-name=neuronjax --nodes=4 --ntasks-per-node=1 {SBATCH} neuronjax run c.yaml"
    ]
    r = bash(
        SLURM, "--nodes", "2", "--cpus-per-task", "16", "--port", "29500", "--sbatch-arg=--qos=high",
        "--sbatch-arg", "--exclusive", "--dry-run", "--", "neuronjax", "run", "c.yaml",
    )  # fmt: skip
    assert lines(r.stdout) == [
        (
            "sbatch --job-name=neuronjax --nodes=2 --ntasks-per-node=1 --cpus-per-task=16 "
            f"--export=ALL,NEURONJAX_PORT=29500 --qos=high --exclusive {SBATCH} neuronjax run c.yaml"
        )
    ]


def test_slurm_submits_with_sbatch(tmp_path):
    calls = recorder(str(tmp_path), "sbatch")
    r = bash(SLURM, *SLURM_FLAGS, "--", "neuronjax", "run", "c.yaml", *AWKWARD, env=path_with(str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert calls() == [SBATCH_ARGS[1:] + [SBATCH, "neuronjax", "run", "c.yaml", *AWKWARD]]


def bare_path(tmp_path):
    """A PATH with only what the scripts need besides the tool under test (dirname)."""
    bindir = tmp_path / "bare"
    bindir.mkdir()
    os.symlink(shutil.which("dirname"), bindir / "dirname")
    return clean_env(PATH=str(bindir))


def test_slurm_without_sbatch_says_so(tmp_path):
    r = bash(SLURM, "--nodes", "2", "--", "true", env=bare_path(tmp_path))
    assert r.returncode == 1 and "sbatch not found" in r.stderr


# --- slurm.sbatch under faked SLURM variables ------------------------------------------------


@pytest.fixture
def slurm_bin(tmp_path):
    """A fake scontrol that expands the node list to gpu-a01, gpu-a02."""
    fake_tool(
        str(tmp_path),
        "scontrol",
        "assert sys.argv[1:] == ['show', 'hostnames', 'gpu-a[01-02]'], sys.argv\nprint('gpu-a01\\ngpu-a02')",
    )
    return str(tmp_path)


def sbatch_env(bindir, **extra):
    env = clean_env(SLURM_JOB_NODELIST="gpu-a[01-02]", SLURM_JOB_ID="123456", SLURM_JOB_NUM_NODES="2", **extra)
    return path_with(bindir, env)


TASK = '\'export NEURONJAX_NUM_PROCESSES="$SLURM_NTASKS" NEURONJAX_PROCESS_ID="$SLURM_PROCID"; exec "$@"\''


def test_sbatch_dry_run(slurm_bin):
    r = bash(SBATCH, *RUN, env=sbatch_env(slurm_bin, NEURONJAX_DRY_RUN="1"))
    assert r.returncode == 0, r.stderr
    # port 20000 + 123456 % 20000
    assert lines(r.stdout) == [
        (
            "NEURONJAX_COORDINATOR=gpu-a01:23456 srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
            f"bash -c {TASK} neuronjax-task {RUN_Q}"
        )
    ]
    r = bash(SBATCH, "true", env=sbatch_env(slurm_bin, NEURONJAX_DRY_RUN="1", NEURONJAX_PORT="29500"))
    assert lines(r.stdout)[0].startswith("NEURONJAX_COORDINATOR=gpu-a01:29500 srun ")


def test_sbatch_runs_each_task_with_its_rank(slurm_bin):
    """A fake srun runs the step as two tasks; each must see its rank and the arguments unchanged."""
    fake_tool(
        slurm_bin,
        "srun",
        "import subprocess\nargs = sys.argv[1:]\n"
        "assert args[:2] == ['--ntasks-per-node=1', '--kill-on-bad-exit=1'], args\n"
        "for i in range(2):\n"
        "    subprocess.run(args[2:], env=dict(os.environ, SLURM_NTASKS='2', SLURM_PROCID=str(i)), check=True)",
    )
    show = [
        PY,
        "-c",
        (
            "import json, os, sys; print(json.dumps([os.environ[k] for k in"
            " ('NEURONJAX_COORDINATOR', 'NEURONJAX_NUM_PROCESSES', 'NEURONJAX_PROCESS_ID')] + [sys.argv[1:]]))"
        ),
    ]
    r = bash(SBATCH, *show, *AWKWARD, env=sbatch_env(slurm_bin))
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)
    assert out[0].startswith("slurm.sbatch: 2 nodes, coordinator gpu-a01:23456: ")
    assert [json.loads(line) for line in out[1:]] == [["gpu-a01:23456", "2", str(i), AWKWARD] for i in range(2)]


def test_sbatch_errors(slurm_bin):
    r = bash(SBATCH, "true", env=path_with(slurm_bin))
    assert r.returncode == 2 and "SLURM_JOB_NODELIST is not set" in r.stderr
    r = bash(SBATCH, env=sbatch_env(slurm_bin, NEURONJAX_DRY_RUN="1"))
    assert r.returncode == 2 and "no command given" in r.stderr
    r = bash(SBATCH, "true", env=sbatch_env(slurm_bin, NEURONJAX_DRY_RUN="1", NEURONJAX_PORT="http"))
    assert r.returncode == 2 and "NEURONJAX_PORT: not a port number: 'http'" in r.stderr


# --- tpu_pod.sh --------------------------------------------------------------------------------

SSH = "gcloud compute tpus tpu-vm ssh my-tpu --zone us-central2-b --project proj --worker=all --command"
TPU_FLAGS = ["--tpu", "my-tpu", "--zone", "us-central2-b", "--project", "proj"]


def test_tpu_dry_run():
    r = bash(TPU, *TPU_FLAGS, "--env", "HF_HOME=/data/hf", "--env", "NOTE=a b", "--dry-run", "--", *RUN)
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [
        f"{SSH} \"cd neuronjax && export PATH=\\$HOME/.local/bin:\\$PATH HF_HOME=/data/hf NOTE='a b' && {RUN_Q}\""
    ]


def test_tpu_dry_run_workdir_setup_no_project():
    flags = ["--tpu", "t1", "--zone", "z", "--workdir", "~/src/nj", "--setup", "--dry-run"]
    r = bash(TPU, *flags, "--", "neuronjax", "run", "c.yaml")
    assert r.returncode == 0, r.stderr
    ssh = "gcloud compute tpus tpu-vm ssh t1 --zone z --worker=all --command"
    assert lines(r.stdout) == [
        f"{ssh} \"cd src/nj && python3 -m pip install -e . 'jax[tpu]'\"",
        f"{ssh} 'cd src/nj && export PATH=$HOME/.local/bin:$PATH && neuronjax run c.yaml'",
    ]
    r = bash(TPU, "--tpu", "t1", "--zone", "z", "--workdir", "/opt/my dir", "--setup", "--dry-run")
    assert lines(r.stdout) == [f"{ssh} \"cd '/opt/my dir' && python3 -m pip install -e . 'jax[tpu]'\""]


def test_tpu_copy_dry_run(tmp_path):
    """--copy sends the top-level entries git lists (tracked or untracked, not ignored)."""
    root = tmp_path / "checkout"
    shutil.copytree(LAUNCH, root / "launch")
    (root / ".gitignore").write_text("/runs/\n")
    for name in ("pkg/mod.py", "pkg/sub/x.py", "runs/r1/out.json", "README.md", "with space.txt", "gone.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "gone.txt", "pkg/mod.py"], check=True)
    (root / "gone.txt").unlink()
    r = bash(str(root / "launch" / "tpu_pod.sh"), "--tpu", "t1", "--zone", "z", "--copy", "--dry-run")
    assert r.returncode == 0, r.stderr
    ssh = "gcloud compute tpus tpu-vm ssh t1 --zone z --worker=all --command"
    sources = " ".join(f"{root}/{n}" for n in (".gitignore", "README.md", "launch", "pkg"))
    sources += f" '{root}/with space.txt'"
    assert lines(r.stdout) == [
        f"{ssh} 'mkdir -p neuronjax'",
        f"gcloud compute tpus tpu-vm scp --recurse {sources} t1:neuronjax --zone z --worker=all",
    ]


def test_tpu_copy_needs_git(tmp_path):
    shutil.copytree(LAUNCH, tmp_path / "launch")
    env = clean_env(GIT_CEILING_DIRECTORIES=str(tmp_path))
    r = bash(str(tmp_path / "launch" / "tpu_pod.sh"), "--tpu", "t", "--zone", "z", "--copy", "--dry-run", env=env)
    assert r.returncode == 1 and "is not a git checkout" in r.stderr


def test_tpu_remote_command_runs_as_given(tmp_path):
    """gcloud gets the remote command as one argument; run by a shell in the remote home, it must
    reach the workdir, find pip's ~/.local/bin on PATH and give neuronjax its arguments unchanged."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = recorder(str(bindir), "gcloud")
    r = bash(TPU, *TPU_FLAGS, "--env", "WEIRD=it's $x", "--", "neuronjax", "run", *AWKWARD, env=path_with(str(bindir)))
    assert r.returncode == 0, r.stderr
    (call,) = calls()
    assert call[:-1] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", *TPU_FLAGS[2:], "--worker=all", "--command"]
    home = tmp_path / "home"
    (home / "neuronjax").mkdir(parents=True)
    (home / ".local" / "bin").mkdir(parents=True)
    fake_tool(
        str(home / ".local" / "bin"),
        "neuronjax",
        "print(json.dumps([os.getcwd(), os.environ['WEIRD'], sys.argv[1:]]))",
    )
    remote = subprocess.run(
        [BASH, "-c", call[-1]], check=False, cwd=home, env=clean_env(HOME=str(home)), capture_output=True, text=True
    )
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == [str(home / "neuronjax"), "it's $x", ["run", *AWKWARD]]


def test_tpu_without_gcloud_says_so(tmp_path):
    r = bash(TPU, "--tpu", "t", "--zone", "z", "--", "true", env=bare_path(tmp_path))
    assert r.returncode == 1 and "gcloud not found" in r.stderr
