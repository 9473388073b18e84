"""Misspelled or out-of-range configuration: run and task YAMLs, top-level and nested keys, and the
same through key=value overrides. Each error names the file and the dotted key; everything here
fails while the config is read, before any model is loaded, except K against the model's neuron
count, which fails before any attribution runs."""

import re

import pytest
import yaml

from neuronjax.config import load_run_config
from neuronjax.configlib import parse_overrides
from neuronjax.identify import AttributionConfig, identify
from neuronjax.methods import NeuronLLM, Random, top_k_masks
from neuronjax.run import identify_run
from neuronjax.tasks.config import load_task_config
from tests.bad_input.helpers import tiny_lm
from tests.methods import planted


@pytest.fixture
def paths(tmp_path):
    """(run YAML, task YAML) written to tmp_path; `write` rewrites the run YAML with changes."""
    task = tmp_path / "task.yaml"
    task.write_text("name: wf\nsource: builtin:world_facts\nsplit: {seed: 0}\n")
    run = tmp_path / "run.yaml"
    base = {"name": "r", "task": "task.yaml", "identify": {"methods": ["neuronllm", "random"], "k": 5, "z": 10},
            "output": str(tmp_path / "runs")}  # fmt: skip

    def write(**changes):
        raw = dict(base)
        for key, value in changes.items():
            raw[key] = value if not isinstance(value, dict) or key not in raw else {**raw[key], **value}
        run.write_text(yaml.safe_dump(raw))
        return str(run)

    write()
    return run, task, write


def _line_of(path, key):
    """The 1-based line of the first line of a YAML file that sets `key`."""
    lines = open(path).read().splitlines()
    return next(i + 1 for i, line in enumerate(lines) if line.strip().startswith(f"{key}:") or f" {key}:" in line or f"{{{key}:" in line)


def _fails(path, message, overrides=()):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_run_config(path, parse_overrides(list(overrides)))


def test_the_base_config_loads(paths):
    run, _, _ = paths
    config = load_run_config(str(run))
    assert config.identify.k == 5 and config.task.endswith("task.yaml")


# ------------------------------------------------------------------------------- run config


def test_run_config_top_level_key_misspelled(paths):
    path = paths[2](identfy={"k": 3})
    _fails(path, f"{path}:1: identfy: unknown key; did you mean 'identify'? (the top level has: name, task, model, identify,")


def test_run_config_nested_key_misspelled(paths):
    path = paths[2](identify={"kk": 3})
    line = _line_of(path, "kk")
    _fails(path, f"{path}:{line}: identify.kk: unknown key; did you mean 'k'? (identify has: methods, k, z,")


def test_run_config_deeply_nested_key_misspelled(paths):
    path = paths[2](identify={"attribution": {"stepz": 4}})
    line = _line_of(path, "stepz")
    _fails(path, f"{path}:{line}: identify.attribution.stepz: unknown key; did you mean 'steps'? "
           "(identify.attribution has: method, steps, rule, groups, replay, layer_steps, share_prefix)")


def test_run_config_value_of_the_wrong_type(paths):
    path = paths[2](identify={"k": "ten"})
    _fails(path, f"{path}:{_line_of(path, 'k')}: identify.k: expected int, got ten")


def test_run_config_key_misspelled_in_an_override(paths):
    run = str(paths[0])
    _fails(run, f"command-line override identify.kk=3 (on {run}): identify.kk: unknown key; did you mean 'k'?", ["identify.kk=3"])
    _fails(run, f"command-line override identfy.k=3 (on {run}): identfy: unknown key; did you mean 'identify'?", ["identfy.k=3"])
    _fails(run, f"command-line override model.dtyp=bfloat16 (on {run}): model.dtyp: unknown key; did you mean 'dtype'?",
           ["model.dtyp=bfloat16"])


def test_override_into_a_value_that_is_not_a_section(paths):
    run = str(paths[0])
    _fails(run, f"command-line override name.x=1 (on {run}): name is a value (r), not a section with keys", ["name.x=1"])


def test_override_without_a_value():
    with pytest.raises(ValueError, match=re.escape("command-line override 'identify.k': expected dotted.key=value")):
        parse_overrides(["identify.k"])


def test_method_name_misspelled(paths):
    run = str(paths[0])
    _fails(run, f"command-line override identify.methods=[neuronlm] (on {run}): identify.methods: 'neuronlm' unknown; "
           "did you mean 'neuronllm'? (expected method names: kn_ig, lape,", ["identify.methods=[neuronlm]"])


def test_method_hyperparameter_misspelled(paths):
    path = paths[2](identify={"methods": ["qrnca"], "params": {"qrnca": {"treshold": 0.3}}})
    _fails(path, f"{path}:{_line_of(path, 'treshold')}: identify.params.qrnca.treshold: unknown key; did you mean 'threshold'? "
           "(identify.params.qrnca has: k, ")


# ------------------------------------------------------------------------------ task config


def test_task_config_top_level_key_misspelled(paths):
    run, task, _ = paths
    task.write_text("name: wf\nsource: builtin:world_facts\nprompts: {answer_format: letter}\n")
    _fails(str(run), f"{task}:3: prompts: unknown key; did you mean 'prompt'? (the top level has: name, source,")


def test_task_config_nested_key_misspelled(paths):
    run, task, _ = paths
    task.write_text("name: wf\nsource: builtin:world_facts\nsplit: {sed: 1}\n")
    _fails(str(run), f"{task}:3: split.sed: unknown key; did you mean 'seed'? (split has: seed, num_demo, eval_fraction, max_eval,")


def test_task_key_misspelled_in_a_command_line_override(paths):
    """task.<key>=... goes to the task YAML; a typo there fails when the run config is read."""
    run, task, _ = paths
    _fails(str(run), f"command-line override task.split.sed=1 (on {task}): split.sed: unknown key; did you mean 'seed'?",
           ["task.split.sed=1"])
    _fails(str(run), f"command-line override task.splits.seed=1 (on {task}): splits: unknown key; did you mean 'split'?",
           ["task.splits.seed=1"])
    _fails(str(run), f"command-line override task.split.seed=one (on {task}): split.seed: expected int, got one",
           ["task.split.seed=one"])
    _fails(str(run), f"command-line override task.name.x=1 (on {task}): name is a value (wf), not a section with keys",
           ["task.name.x=1"])


def test_task_key_misspelled_in_task_overrides_of_the_run_yaml(paths):
    _, task, write = paths
    path = write(task_overrides={"aqua.num_proxy": 2})
    _fails(path, f"{path}: task_overrides override aqua.num_proxy=2 (on {task}): aqua.num_proxy: unknown key; "
           "did you mean 'num_proxies'? (aqua has: num_proxies, kind, seed)")


def test_task_yaml_that_does_not_exist(paths):
    _, _, write = paths
    path = write(task="nowhere.yaml")
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.yaml: no such task config")):
        load_run_config(path)


def test_task_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("- name: wf\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: expected a mapping of task config keys at the top level, got list")):
        load_task_config(str(path))


# --------------------------------------------------------------------------------- K and z


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one(paths, k):
    run = str(paths[0])
    _fails(run, f"command-line override identify.k={k} (on {run}): identify.k: expected an integer >= 1 (neurons per set), "
           f"got {k}", [f"identify.k={k}"])


def test_z_below_one_and_per_method_k(paths):
    run = str(paths[0])
    _fails(run, f"command-line override identify.z=0 (on {run}): identify.z: expected an integer >= 1 (neurons per set), got 0",
           ["identify.z=0"])
    _fails(run, f"command-line override identify.params={{neuronllm: {{k: 0}}}} (on {run}): identify.params.neuronllm.k: "
           "expected an integer >= 1 (neurons per set), got 0", ["identify.params={neuronllm: {k: 0}}"])


def test_k_larger_than_the_neuron_count_in_a_run(paths):
    """Checked against the loaded model, before the task is encoded or anything attributed."""
    run = str(paths[0])
    config = load_run_config(run, parse_overrides(["identify.k=97"]))
    message = f"{run}: identify.k (method neuronllm) = 97: expected an integer in 1..96 (the model's neuron count)"
    with pytest.raises(ValueError, match=re.escape(message)):
        identify_run(config, lm=tiny_lm(layers=2, mlp=48), progress=False)


def test_k_larger_than_the_neuron_count_in_identify():
    lm, task = planted.model(), planted.task(num_items=4)
    with pytest.raises(ValueError, match=re.escape("neuronllm.k = 97: expected an integer in 1..96 (the model's neuron count)")):
        identify(lm, task, [NeuronLLM(k=97, z=4)], AttributionConfig("grad_x_act"))
    with pytest.raises(ValueError, match=re.escape("neuronllm.z = 200: expected an integer in 1..96")):
        identify(lm, task, [NeuronLLM(k=2, z=200)], AttributionConfig("grad_x_act"))
    with pytest.raises(ValueError, match=re.escape("random.k = 0: expected an integer in 1..96")):
        Random(k=0, good_per_layer=(1, 1), bad_per_layer=(0, 0)).init(2, 48)


def test_top_k_masks_checks_k():
    with pytest.raises(ValueError, match=re.escape("k = 7: expected an integer in 1..6 (the model's neuron count)")):
        top_k_masks([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]], 7)
