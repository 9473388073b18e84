"""A run's neuron sets in formats other tools read: safetensors (any framework), CSV and JSON (one
row per neuron of the good and bad sets, for a spreadsheet or a DataFrame).

    neuronjax export RUN_DIR --format safetensors|csv|json [--method M ...] [--output DIR]

RUN_DIR is a run directory (its sets live under RUN_DIR/neurons/<method>/) or one saved set (a
directory holding neurons.json). Files go to DIR (default RUN_DIR/export/):

    safetensors  <method>.safetensors: scores float32, good and bad bool [layers, mlp], grid
                 int64 [2] (the same file `save_neurons` writes beside each set)
    csv          neuron_rows.csv: method, side, layer, index, score (and for a mixture of experts:
                 expert, expert_index, the neuron within its expert)
    json         neuron_rows.json: a list of {method, side, layer, index, score}

Rows list each method's good set by descending score, then its bad set by ascending score (the
strongest neurons of each side first); layer and index count from 0.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable

import numpy as np

from neuronjax.errors import InputError
from neuronjax.io.neurons import SIDECAR, NeuronSet, load_neurons, write_safetensors

FORMATS = ("safetensors", "csv", "json")
COLUMNS = ("method", "side", "layer", "index", "score")


def result_dirs(run_dir: str, methods: Iterable[str] = ()) -> dict[str, str]:
    """{method: directory of its saved set} of a run directory, or of one saved set."""
    from neuronjax.run import NEURONS  # a run directory's folder of sets, one per method

    run_dir = os.path.abspath(run_dir)
    if os.path.exists(os.path.join(run_dir, SIDECAR)):  # one set
        found = {os.path.basename(run_dir): run_dir}
    else:
        folder = os.path.join(run_dir, NEURONS)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"{run_dir}: neither a run directory (no {NEURONS}/ folder) nor a saved neuron set (no {SIDECAR}); "
                "expected the directory of an identified run"
            )
        found = {m: os.path.join(folder, m) for m in sorted(os.listdir(folder))
                 if os.path.exists(os.path.join(folder, m, SIDECAR))}  # fmt: skip
        if not found:
            raise FileNotFoundError(f"{folder}: no saved neuron set (no <method>/{SIDECAR}); identify first")
    methods = list(methods)
    unknown = [m for m in methods if m not in found]
    if unknown:
        raise InputError(f"{run_dir}: no neuron set for method(s) {unknown}; it holds {sorted(found)}")
    return {m: found[m] for m in methods} if methods else found


def neuron_rows(method: str, result: NeuronSet) -> list[dict]:
    """One row {method, side, layer, index, score} per neuron of the good and bad sets (with
    expert and expert_index for a mixture of experts): good by descending score, bad by ascending
    score, ties by (layer, index)."""
    rows = []
    for side, mask, sign in (("good", result.good, -1.0), ("bad", result.bad, 1.0)):
        layer, index = np.nonzero(np.asarray(mask, bool))
        score = np.asarray(result.scores, np.float32)[layer, index]
        for k in np.lexsort((index, layer, sign * score)):
            rows.append({"method": method, "side": side, "layer": int(layer[k]), "index": int(index[k]),
                         "score": float(score[k])})  # fmt: skip
            if result.experts:
                expert, within = result.expert_of(int(index[k]))
                rows[-1].update(expert=int(expert), expert_index=int(within))
    return rows


def export_neurons(run_dir: str, fmt: str, methods: Iterable[str] = (), output: str | None = None) -> list[str]:
    """Write the sets of `run_dir` (all its methods, or `methods`) as `fmt` under `output`
    (default RUN_DIR/export); return the paths written."""
    if fmt not in FORMATS:
        raise InputError(f"export format {fmt!r} unknown; expected one of {', '.join(FORMATS)}")
    dirs = result_dirs(run_dir, methods)
    output = os.path.abspath(output or os.path.join(run_dir, "export"))
    os.makedirs(output, exist_ok=True)
    sets = {m: load_neurons(d) for m, d in dirs.items()}
    if fmt == "safetensors":
        return [write_safetensors(os.path.join(output, f"{m}.safetensors"), ns) for m, ns in sets.items()]
    rows = [row for m, ns in sets.items() for row in neuron_rows(m, ns)]
    if fmt == "json":
        from neuronjax.evaluation.results import write_json

        path = os.path.join(output, "neuron_rows.json")
        write_json(path, rows)
        return [path]
    text = io.StringIO()
    columns = COLUMNS + (("expert", "expert_index") if any("expert" in r for r in rows) else ())
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)  # scores print as the float32 value exactly (a float64 decimal)
    path = os.path.join(output, "neuron_rows.csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text.getvalue())
    os.replace(tmp, path)
    return [path]
