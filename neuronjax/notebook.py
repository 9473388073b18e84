"""A saved run as objects and DataFrames, for notebooks.

    run = neuronjax.load_run("runs/quickstart")
    run.config                                   # the RunConfig it was made with
    run.sets["neuronllm"]                        # NeuronSet (.to_dataframe(): one row per neuron)
    run.evaluation                               # DataFrame: one row per method x mode x K, controls included
    run.predictions                              # DataFrame: one row per held-out proxy under each condition
    run.results                                  # the typed Evaluation (neuronjax.evaluation.results)
    iv = run.intervention("neuronllm", "suppress_bad")
    lm = run.model()
    lm.generate("The capital of France is", iv)

The DataFrames need pandas (the [notebook] extra), imported when first asked for; reading
predictions.parquet needs pyarrow (the [parquet] extra).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

from neuronjax.config import RunConfig, config_of_run
from neuronjax.evaluation.results import METRICS, Evaluation
from neuronjax.io.neurons import NeuronSet, load_neurons
from neuronjax.run import EVALUATION, NEURONS, PREDICTIONS, predictions_path


def load_run(directory: str) -> Run:
    """The run in `directory` (what `neuronjax run` / `identify` wrote): its config and saved sets;
    the evaluation and predictions are read when first used."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such run directory; `neuronjax run CONFIG` creates one")
    config = config_of_run(directory)
    found = os.path.join(directory, NEURONS)
    names = sorted(os.listdir(found)) if os.path.isdir(found) else []
    names = [m for m in config.identify.methods if m in names] + [m for m in names if m not in config.identify.methods]
    sets = {m: load_neurons(os.path.join(found, m)) for m in names}
    return Run(os.path.abspath(directory), config, sets)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("a run's DataFrames need pandas; pip install 'neuronjax[notebook]'") from None
    return pandas


class Run:
    """A saved run: `config`, `sets`, `results` (typed), `evaluation` and `predictions` (DataFrames)."""

    def __init__(self, directory: str, config: RunConfig, sets: dict[str, NeuronSet]):
        self.directory, self.config, self.sets = directory, config, sets

    def __repr__(self) -> str:
        done = "evaluated" if os.path.exists(os.path.join(self.directory, EVALUATION)) else "not evaluated"
        return f"Run({self.config.name!r}, sets {list(self.sets)}, {done}, in {self.directory})"

    @functools.cached_property
    def results(self) -> Evaluation:
        """The typed evaluation (evaluation.json)."""
        path = os.path.join(self.directory, EVALUATION)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path}: the run has no evaluation; `neuronjax evaluate {self.directory}` makes it"
            )
        return Evaluation.load(path)

    @functools.cached_property
    def evaluation(self):
        """One row per condition: method, mode, k, control (the pooled random control of that
        method, mode and K), good, bad (neurons edited), then each metric (accuracy, consistent)
        with its 95% interval as <metric>, <metric>_low, <metric>_high, and its paired differences
        to no intervention (vs_none_<metric>...) and to the random control (vs_random_<metric>...,
        NaN for the baseline and the controls). The K-curve rows follow the rows of the sets."""
        pd = _pandas()
        results = self.results
        seen = {(r.method, r.mode, r.k, r.control) for r in results.rows}
        rows = list(results.rows) + [r for r in results.curve if (r.method, r.mode, r.k, r.control) not in seen]
        table = []
        for r in rows:
            row = {"method": r.method, "mode": r.mode, "k": r.k, "control": r.control, "good": r.good, "bad": r.bad}
            for prefix, metrics in (("", r.metrics), ("vs_none_", r.vs_none), ("vs_random_", r.vs_random)):
                for m in METRICS:
                    iv = metrics[m] if metrics is not None else None
                    for suffix, attr in (("", "value"), ("_low", "low"), ("_high", "high")):
                        row[f"{prefix}{m}{suffix}"] = getattr(iv, attr) if iv is not None else float("nan")
            table.append(row)
        return pd.DataFrame(table)

    @functools.cached_property
    def predictions(self):
        """One row per held-out proxy under each condition (predictions.parquet / .csv): condition,
        method, mode, k, control, seed (-1 but for controls), item, proxy, gold, chosen, correct,
        score_A, score_B, ... (see `neuronjax.evaluation.Measured.predictions`)."""
        pd = _pandas()
        path = predictions_path(self.directory)
        if path is None:
            raise FileNotFoundError(f"{os.path.join(self.directory, PREDICTIONS)}.parquet (or .csv): not found; "
                                    f"`neuronjax evaluate {self.directory}` writes it")  # fmt: skip
        if path.endswith(".csv"):
            return pd.read_csv(path)
        try:
            return pd.read_parquet(path)
        except ImportError as err:
            raise ImportError(f"{path}: reading it needs pyarrow; pip install 'neuronjax[parquet]' ({err})") from None

    def intervention(self, method: str, mode: str, all_positions: Optional[bool] = None):
        """The Intervention of `method`'s set under `mode`, at the positions the run evaluated
        (all_positions overrides) and with its set_value."""
        from neuronjax.intervention import from_masks

        if method not in self.sets:
            raise KeyError(f"{method!r}: no such set in {self.directory}; the run has {list(self.sets)}")
        ns = self.sets[method]
        every = self.config.evaluate.all_positions if all_positions is None else all_positions
        return from_masks(mode, ns.good, ns.bad, all_positions=every, value=self.config.evaluate.set_value)

    def model(self):
        """The run's model (its config's path, dtype and mesh), loaded; the sets were found on it."""
        from neuronjax.run import load_model_for

        return load_model_for(self.config)
