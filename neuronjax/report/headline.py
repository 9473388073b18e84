"""The finding a run's report opens with: what the main method's sets do to held-out accuracy
against random sets of the same per-layer counts, as a typed value and as sentences.

The lead effect is the largest lift that stands against the random control (its verdict corrected
for multiplicity where the evaluation has one, else its paired 95% interval excluding zero; a mode
that edits one set first: it shows what that set alone does), else the largest such drop; the counter-effect is the strongest significant one-set effect the other way.
The last sentence bounds what the random controls themselves did.
"""

from __future__ import annotations

import dataclasses

from neuronjax.cards import main_method
from neuronjax.evaluation.results import ConditionResult, Evaluation
from neuronjax.intervention import mode_sides

# What each mode does to the sets, as the subject of a sentence ({m}: whose, {g}, {b}: set sizes).
ACTIONS = {
    "suppress_good": "Silencing {m} {g} good neurons",
    "suppress_bad": "Silencing {m} {b} bad neurons",
    "enhance_good": "Doubling {m} {g} good neurons",
    "enhance_bad": "Doubling {m} {b} bad neurons",
    "set_good": "Setting {m} {g} good neurons to a constant",
    "set_bad": "Setting {m} {b} bad neurons to a constant",
    "enhancer": "Doubling {m} {g} good neurons and silencing its {b} bad ones",
    "degrader": "Silencing {m} {g} good neurons and doubling its {b} bad ones",
}


@dataclasses.dataclass(frozen=True)
class Headline:
    method: str  # the main method (neuronllm when evaluated)
    baseline: ConditionResult  # no intervention
    lead: ConditionResult | None  # the effect the report leads with (None: nothing significant)
    counter: ConditionResult | None  # the strongest significant one-set effect the other way
    largest: ConditionResult | None  # without a significant effect: the largest difference
    control_spread: float | None  # largest |accuracy change| of the method's random controls
    neurons: int | None  # neurons in the model (layers x mlp), when known

    def sentences(self) -> list[str]:
        base = self.baseline.accuracy.value
        out = []
        if self.lead is not None:
            r = self.lead
            out.append(f"{self._action(r)}{self._share(r)} {_verb(r.accuracy.value - base)} held-out accuracy from "
                       f"{base:.3f} to {r.accuracy.value:.3f} ({r.vs_random.accuracy.value:+.3f} against random sets "
                       f"of the same per-layer counts [95% CI {r.vs_random.accuracy.low:+.3f}, "
                       f"{r.vs_random.accuracy.high:+.3f}]).")  # fmt: skip
        elif self.largest is not None:
            r = self.largest
            out.append(f"No intervention on {self.method}'s sets moves held-out accuracy ({base:.3f}) beyond random "
                       f"sets of the same per-layer counts; the largest difference, {r.mode}, is "
                       f"{r.vs_random.accuracy.signed()}.")  # fmt: skip
        else:
            out.append(f"{self.method}'s sets were not measured against random sets (held-out accuracy "
                       f"without intervention: {base:.3f}).")  # fmt: skip
        if self.counter is not None:
            r = self.counter
            out.append(f"{self._action(r, 'its')} {_verb(r.accuracy.value - base)} it to {r.accuracy.value:.3f} "
                       f"({r.vs_random.accuracy.signed()}).")  # fmt: skip
        if self.control_spread is not None:
            out.append(f"Random sets of the same per-layer counts, under the same modes, move it by at most "
                       f"{self.control_spread:.3f}.")  # fmt: skip
        return out

    def text(self) -> str:
        return " ".join(self.sentences())

    def _action(self, r: ConditionResult, whose: str = "") -> str:
        template = ACTIONS.get(r.mode, "Intervening ({mode}) on {m} {g} good / {b} bad neurons")
        return template.format(m=whose or f"{self.method}'s", g=r.good, b=r.bad, mode=r.mode)

    def _share(self, r: ConditionResult) -> str:
        if not self.neurons:
            return ""
        return f" ({100 * r.edited / self.neurons:.1f}% of the model's {self.neurons:,} neurons)"


def _direction(r: ConditionResult) -> int:
    """+1 / -1 where the set's accuracy is above / below its random control's: by the verdict
    corrected for multiplicity where the evaluation has one, else by the 95% interval."""
    iv = r.vs_random.accuracy
    corrected = getattr(iv, "corrected", None)
    if corrected is not None:
        return {"higher": 1, "lower": -1}.get(corrected, 0)
    return iv.direction


def _verb(change: float) -> str:
    return "lifts" if change > 0 else "lowers" if change < 0 else "leaves"


def headline(evaluation: Evaluation) -> Headline | None:
    """The run's headline (None when no set was evaluated)."""
    method = main_method(evaluation.method_names)
    if method is None:
        return None
    rows = [r for r in evaluation.sets() if r.method == method and not r.empty and r.vs_random is not None]
    significant = [r for r in rows if _direction(r) != 0]

    def strength(r: ConditionResult) -> tuple:
        return (len(mode_sides(r.mode)) == 1, abs(r.vs_random.accuracy.value))

    ups = [r for r in significant if _direction(r) > 0]
    lead = max(ups or significant, key=strength, default=None)
    counter = None
    if lead is not None:
        other = [r for r in significant if _direction(r) == -_direction(lead) and len(mode_sides(r.mode)) == 1]
        counter = max(other, key=strength, default=None)
    largest = max(rows, key=lambda r: abs(r.vs_random.accuracy.value), default=None) if lead is None else None
    controls = [r for r in evaluation.rows if r.control and r.method == method]
    spread = max((abs(r.vs_none.accuracy.value) for r in controls), default=None)
    layers, mlp = evaluation.model.get("layers"), evaluation.model.get("mlp")
    neurons = int(layers) * int(mlp) if isinstance(layers, int) and isinstance(mlp, int) else None
    return Headline(method, evaluation.baseline, lead, counter, largest, spread, neurons)
