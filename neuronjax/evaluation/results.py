"""What an evaluation measured, as typed values: written to evaluation.json / cross.json by
`to_json` and read back by `from_json` (the report, the sweep table and notebooks read results
through these classes, never by string keys).

Metrics are over held-out proxies and items (see `neuronjax.evaluation.stats`): ``accuracy``
(share of proxies answered right) and ``consistent`` (share of items whose every proxy is right),
each a point value with its 95% bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, Optional

from neuronjax.intervention import mode_sides

METRICS = ("accuracy", "consistent")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% bootstrap interval; a paired difference also carries its
    two-sided bootstrap p-value and, in a corrected family (a table's rows against their random
    controls, or its head-to-head pairs), the Holm-adjusted p-value and the verdict it gives
    (`neuronjax.evaluation.stats`). Evaluations written before these existed read back with None."""

    value: float
    low: float
    high: float
    p: Optional[float] = None  # two-sided paired bootstrap p-value (differences only)
    p_adjusted: Optional[float] = None  # Holm-adjusted over its family (None: not in a corrected family)
    corrected: Optional[str] = None  # "higher" / "lower" / "n.s." at family-wise 0.05 (Holm)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def signed(self) -> str:
        return f"{self.value:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def direction(self) -> int:
        """+1 / -1 where the interval lies above / below zero, 0 where it includes zero."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def with_correction(self, p_adjusted: float, corrected: str) -> "Interval":
        return dataclasses.replace(self, p_adjusted=p_adjusted, corrected=corrected)

    def to_json(self) -> dict:
        out = {"value": self.value, "low": self.low, "high": self.high}
        for name in ("p", "p_adjusted", "corrected"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Interval":
        number = lambda key: None if d.get(key) is None else float(d[key])  # noqa: E731
        return cls(float(d["value"]), float(d["low"]), float(d["high"]), number("p"), number("p_adjusted"),
                   d.get("corrected"))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Both metrics (or both differences) of one condition."""

    accuracy: Interval
    consistent: Interval

    def __getitem__(self, metric: str) -> Interval:
        if metric not in METRICS:
            raise KeyError(f"metric {metric!r}; expected one of {METRICS}")
        return getattr(self, metric)

    def to_json(self) -> dict:
        return {m: self[m].to_json() for m in METRICS}

    @classmethod
    def from_json(cls, d: Optional[dict]) -> Optional["Metrics"]:
        return None if d is None else cls(**{m: Interval.from_json(d[m]) for m in METRICS})


@dataclasses.dataclass(frozen=True)
class ConditionResult:
    """One measured condition: a method's set (or its pooled random control) under one mode at one K."""

    method: str  # the set's method; "none" for the unedited model
    mode: str  # intervention mode ("none" for the unedited model)
    k: int  # the K the set was selected at (0 for none)
    control: bool  # True: the random control of (method, mode, k), pooled over seeds
    good: int  # neurons edited as good
    bad: int  # neurons edited as bad
    metrics: Metrics  # accuracy and consistent accuracy
    vs_none: Metrics  # this condition minus no intervention, paired over the same resamples
    vs_random: Optional[Metrics]  # minus the random control (sets only, not controls)
    letters: tuple[float, ...]  # share of proxies answered with each letter

    @property
    def accuracy(self) -> Interval:
        return self.metrics.accuracy

    @property
    def consistent(self) -> Interval:
        return self.metrics.consistent

    @property
    def edited(self) -> int:
        """How many neurons the mode edits: the good set, the bad set, or both."""
        return sum(getattr(self, side) for side in mode_sides(self.mode))

    @property
    def empty(self) -> bool:
        """The mode edits no neuron (e.g. suppress_bad of a method that finds no bad neurons)."""
        return self.method != "none" and self.edited == 0

    def to_json(self) -> dict:
        out = {"method": self.method, "mode": self.mode, "k": self.k, "control": self.control,
               "good": self.good, "bad": self.bad, **self.metrics.to_json(),
               "vs_none": self.vs_none.to_json()}  # fmt: skip
        if self.vs_random is not None:
            out["vs_random"] = self.vs_random.to_json()
        out["letters"] = list(self.letters)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "ConditionResult":
        return cls(
            method=d["method"], mode=d["mode"], k=int(d["k"]), control=bool(d["control"]),
            good=int(d["good"]), bad=int(d["bad"]),
            metrics=Metrics(Interval.from_json(d["accuracy"]), Interval.from_json(d["consistent"])),
            vs_none=Metrics.from_json(d["vs_none"]), vs_random=Metrics.from_json(d.get("vs_random")),
            letters=tuple(float(x) for x in d.get("letters", ())),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Method a's accuracy minus method b's under one mode, paired over the same items and resamples."""

    a: str
    b: str
    mode: str
    k_a: int
    k_b: int
    difference: Metrics

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "mode": self.mode, "k_a": self.k_a, "k_b": self.k_b,
                "difference": self.difference.to_json()}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> "Comparison":
        return cls(d["a"], d["b"], d["mode"], int(d["k_a"]), int(d["k_b"]), Metrics.from_json(d["difference"]))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Every condition measured on one task's held-out items."""

    task: str  # the task's name
    items: int  # held-out items
    proxies: int  # held-out proxy prompts
    all_positions: bool  # interventions edited every position (else the last)
    random_seeds: tuple[int, ...]  # seeds of the pooled random controls
    bootstrap: int  # item resamples of the intervals
    rows: tuple[ConditionResult, ...]  # every set x mode at its own K, with its control; "none" first
    curve: tuple[ConditionResult, ...] = ()  # accuracy against K (sets re-selected at other K)
    compare: tuple[Comparison, ...] = ()  # head-to-head differences of method pairs
    # filled in by the run pipeline (empty for a bare evaluate_sets call)
    seconds: float = 0.0  # wall time of the evaluation
    run: str = ""  # the run's name
    model: dict = dataclasses.field(default_factory=dict)  # the model's fingerprint (from the sets' sidecars)
    identify: dict = dataclasses.field(default_factory=dict)  # {method: identification statistics}
    methods: dict = dataclasses.field(default_factory=dict)  # {method: its hyper-parameters}
    # how the verdicts were corrected for multiplicity, e.g. {"method": "holm", "alpha": 0.05, ...};
    # empty for an evaluation written before verdicts were corrected (its verdicts are the raw CIs')
    correction: dict = dataclasses.field(default_factory=dict)

    # -- lookups -----------------------------------------------------------------------------
    @property
    def baseline(self) -> ConditionResult:
        """The unedited model."""
        return next(r for r in self.rows if r.method == "none")

    @property
    def method_names(self) -> list[str]:
        """Evaluated methods, in row order."""
        return list(dict.fromkeys(r.method for r in self.rows if r.method != "none"))

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(r.mode for r in self.rows if r.method != "none"))

    def sets(self) -> Iterator[ConditionResult]:
        """The rows of the sets themselves (no controls, no baseline)."""
        return (r for r in self.rows if r.method != "none" and not r.control)

    def find(self, method: str, mode: str, k: Optional[int] = None, control: bool = False,
             curve: bool = False) -> Optional[ConditionResult]:  # fmt: skip
        """The condition (method, mode[, k]) or its control; None when not measured."""
        for r in self.curve if curve else self.rows:
            if r.method == method and r.mode == mode and r.control == control and (k is None or r.k == k):
                return r
        return None

    def control_of(self, row: ConditionResult, curve: bool = False) -> Optional[ConditionResult]:
        return self.find(row.method, row.mode, row.k, control=True, curve=curve)

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "task": self.task, "items": self.items, "proxies": self.proxies, "all_positions": self.all_positions,
            "random_seeds": list(self.random_seeds), "bootstrap": self.bootstrap,
            "rows": [r.to_json() for r in self.rows], "curve": [r.to_json() for r in self.curve],
            "compare": [c.to_json() for c in self.compare],
            "seconds": self.seconds, "run": self.run, "model": self.model, "identify": self.identify,
            "methods": self.methods, **({"correction": self.correction} if self.correction else {}),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> "Evaluation":
        return cls(
            task=d["task"], items=int(d["items"]), proxies=int(d["proxies"]), all_positions=bool(d["all_positions"]),
            random_seeds=tuple(int(s) for s in d.get("random_seeds", ())), bootstrap=int(d.get("bootstrap", 0)),
            rows=tuple(ConditionResult.from_json(r) for r in d["rows"]),
            curve=tuple(ConditionResult.from_json(r) for r in d.get("curve", ())),
            compare=tuple(Comparison.from_json(c) for c in d.get("compare") or ()),
            seconds=float(d.get("seconds", 0.0)), run=d.get("run", ""), model=d.get("model", {}),
            identify=d.get("identify", {}), methods=d.get("methods", {}), correction=d.get("correction", {}),
        )  # fmt: skip

    def save(self, path: str) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> "Evaluation":
        return cls.from_json(read_json(path))


@dataclasses.dataclass(frozen=True)
class CrossEvaluation:
    """A run's sets evaluated on the held-out items of other tasks (the cross-task matrix)."""

    targets: tuple[Evaluation, ...]
    source_task: Optional[str] = None  # the task the sets were identified on

    def to_json(self) -> dict:
        return {"source_task": self.source_task, "targets": [t.to_json() for t in self.targets]}

    @classmethod
    def from_json(cls, d: dict) -> "CrossEvaluation":
        return cls(tuple(Evaluation.from_json(t) for t in d["targets"]), d.get("source_task"))

    def save(self, path: str) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> "CrossEvaluation":
        return cls.from_json(read_json(path))


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
