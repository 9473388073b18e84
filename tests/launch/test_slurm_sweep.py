"""launch/slurm.sh --sweep: a job array with one point per array task and a gather job after it,
with fake sbatch / srun / scontrol / neuronjax on PATH (the fake neuronjax counts 12 points).
The exact dry-run snippet, that it pastes back, the real submissions (array range, dependency
on the array's job id) and what each array task runs. No JAX, no cluster."""

import json
import subprocess

import pytest

from tests.launch.test_launch import (  # noqa: F401 (slurm_bin is a fixture)
    AWKWARD,
    BASH,
    SBATCH,
    SLURM,
    bare_path,
    bash,
    fake_tool,
    lines,
    path_with,
    recorder,
    sbatch_env,
    slurm_bin,
)

SWEEP = "configs/sweeps/example.yaml"  # relative to the repository root, where the scripts run
POINT = 'exec neuronjax sweep "$0" --point "$SLURM_ARRAY_TASK_ID" "$@"'
FLAGS = ["--sweep", SWEEP, "--gpus-per-node", "1", "--partition", "gpu", "--time", "01:00:00", "--max-running", "4",
         "--sbatch-arg=--qos=high"]  # fmt: skip


def fake_neuronjax(bindir, count="12", status=0):
    """A fake neuronjax that logs its arguments; with --count it prints `count` and exits with
    `status`, else it prints its arguments as JSON. Returns the log's reader."""
    fail = "print('neuronjax sweep: error: bad sweep', file=sys.stderr)"
    return recorder(bindir, "neuronjax", (
        f"if '--count' in sys.argv:\n    {f'print({count!r})' if status == 0 else fail}\n    sys.exit({status})\n"
        "print(json.dumps(sys.argv[1:]))"
    ))  # fmt: skip


def fake_sbatch(bindir):
    """A fake sbatch that logs its arguments and prints job ids 1000, 1001, ... (as --parsable
    does on a cluster with a name: "id;cluster")."""
    return recorder(bindir, "sbatch", "print(f'{999 + sum(1 for _ in open(LOG))};cluster')")


def test_sweep_dry_run(tmp_path):
    counts = fake_neuronjax(str(tmp_path))
    r = bash(SLURM, *FLAGS, "--dry-run", "--", "--quiet", "evaluate.bootstrap=200", env=path_with(str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [
        (
            "array_job=$(sbatch --parsable --job-name=neuronjax --nodes=1 --ntasks-per-node=1 --gpus-per-node=1 "
            f"--partition=gpu --time=01:00:00 --array=1-12%4 --qos=high {SBATCH} bash -c '{POINT}' {SWEEP} "
            "--quiet evaluate.bootstrap=200)"
        ),
        (
            "sbatch --parsable --job-name=neuronjax-gather --nodes=1 --ntasks-per-node=1 "
            '--dependency=afterany:"${array_job%%;*}" --partition=gpu --time=01:00:00 --qos=high '
            f"{SBATCH} neuronjax sweep {SWEEP} --gather --quiet evaluate.bootstrap=200"
        ),
    ]
    assert counts() == [["sweep", SWEEP, "--count", "--quiet", "evaluate.bootstrap=200"]]


def test_sweep_dry_run_snippet_pastes_back(tmp_path):
    """Run by bash, the two printed lines submit the array, then the gather job after it."""
    fake_neuronjax(str(tmp_path))
    r = bash(SLURM, "--sweep", SWEEP, "--dry-run", "--", *AWKWARD, env=path_with(str(tmp_path)))
    assert r.returncode == 0, r.stderr
    submitted = fake_sbatch(str(tmp_path))
    out = subprocess.run([BASH, "-c", r.stdout], check=False, capture_output=True, text=True, env=path_with(str(tmp_path)))
    assert out.returncode == 0, out.stderr
    array, gather = submitted()
    assert array[-len(AWKWARD) - 3 :] == ["-c", POINT, SWEEP, *AWKWARD] and "--array=1-12" in array
    assert gather[4] == "--dependency=afterany:1000"
    assert gather[-len(AWKWARD) - 3 :] == ["sweep", SWEEP, "--gather", *AWKWARD]


def test_sweep_submits_the_array_then_the_gather_job(tmp_path, slurm_bin):  # noqa: F811 (the fixture)
    fake_neuronjax(str(tmp_path))
    submitted = fake_sbatch(str(tmp_path))
    args = ["evaluate.bootstrap=200", "name with space=1"]
    r = bash(SLURM, *FLAGS, "--nodes", "2", "--", *args, env=path_with(str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [f"slurm.sh: sweep {SWEEP}: job array 1000 (12 points, one per task), then gather job 1001"]
    array, gather = submitted()
    assert array == ["--parsable", "--job-name=neuronjax", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=1",
                     "--partition=gpu", "--time=01:00:00", "--array=1-12%4", "--qos=high", SBATCH,
                     "bash", "-c", POINT, SWEEP, *args]  # fmt: skip
    assert gather == ["--parsable", "--job-name=neuronjax-gather", "--nodes=1", "--ntasks-per-node=1",
                      "--dependency=afterany:1000", "--partition=gpu", "--time=01:00:00", "--qos=high", SBATCH,
                      "neuronjax", "sweep", SWEEP, "--gather", *args]  # fmt: skip

    # Array task 7, as slurm.sbatch runs it: every srun task runs point 7 with the arguments unchanged.
    fake_tool(
        slurm_bin,
        "srun",
        "import subprocess\nargs = sys.argv[1:]\n"
        "for i in range(2):\n"
        "    subprocess.run(args[2:], env=dict(os.environ, SLURM_NTASKS='2', SLURM_PROCID=str(i)), check=True)",
    )
    env = path_with(str(tmp_path), sbatch_env(slurm_bin, SLURM_ARRAY_TASK_ID="7"))
    task = bash(SBATCH, *array[array.index(SBATCH) + 1 :], env=env)
    assert task.returncode == 0, task.stderr
    assert [json.loads(line) for line in lines(task.stdout)[1:]] == [["sweep", SWEEP, "--point", "7", *args]] * 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sweep", "configs/sweeps/nowhere.yaml"], "--sweep: no such file: 'configs/sweeps/nowhere.yaml'"),
        (["--sweep", SWEEP, "--", "--point", "3"], "--sweep sets --point itself"),
        (["--sweep", SWEEP, "--", "--gather"], "--sweep sets --gather itself"),
        (["--sweep", SWEEP, "--max-running", "0"], "--max-running expects a whole number >= 1, got '0'"),
        (["--nodes", "2", "--max-running", "3", "--", "true"], "--max-running goes with --sweep"),
    ],
)
def test_sweep_flag_errors(tmp_path, args, message):
    fake_neuronjax(str(tmp_path))
    r = bash(SLURM, *args, "--dry-run", env=path_with(str(tmp_path)))
    assert r.returncode == 2 and r.stdout == "" and message in r.stderr


def test_sweep_count_errors(tmp_path):
    fake_neuronjax(str(tmp_path), status=2)
    submitted = recorder(str(tmp_path), "sbatch")
    r = bash(SLURM, "--sweep", SWEEP, env=path_with(str(tmp_path)))
    assert r.returncode == 1 and "neuronjax sweep: error: bad sweep" in r.stderr
    assert f"could not count the points: neuronjax sweep {SWEEP} --count failed" in r.stderr
    assert submitted() == []
    fake_neuronjax(str(tmp_path), count="twelve")
    r = bash(SLURM, "--sweep", SWEEP, "--dry-run", env=path_with(str(tmp_path)))
    assert r.returncode == 1 and "--count printed 'twelve', not a number of points" in r.stderr
    r = bash(SLURM, "--sweep", SWEEP, "--dry-run", env=bare_path(tmp_path))
    assert r.returncode == 1 and "neuronjax not found on PATH" in r.stderr
