"""What a neuron does: one card per neuron, with the tokens it writes towards and the held-out
prompts on which it fires.

A card reads a neuron (layer l, index i) two ways:

- Direct logit effect ("logit lens" reading of FFN value vectors, Geva et al. 2022, "Transformer
  Feed-Forward Layers Build Predictions by Promoting Concepts in the Vocabulary Space"): the
  neuron's row of the down projection, w = W_down[l, i, :] [embed], is what one unit of its
  activation adds to the residual stream. Mapped straight to the output head through the final
  norm's scale g [embed], its logit contribution per token is (w * g) @ W_head [vocab]; the
  tokens with the largest values are the ones it promotes, the smallest the ones it suppresses.
  This is the direct path only: the layers after l, which read and transform what the neuron
  wrote, are ignored, and so is the final norm's division by the residual's RMS (a positive
  factor shared by every token, which changes no ranking). A negative activation writes the
  reverse direction (it promotes the suppressed tokens).
- Where it fires: its activation at the last prompt position (the input of the down projection,
  unedited model) on every held-out proxy; the card keeps the items on which it is strongest in
  magnitude, each with its strongest proxy.

`build_cards` makes the cards of a set's top good and bad neurons (the run pipeline writes them to
<run>/cards.json for the report); `inspect_neuron` makes one card of any neuron of a saved run
(`neuronjax inspect RUN_DIR --neuron L:I`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

PER_SIDE = 8  # cards per side (good, bad) of a run
TOKENS = 10  # promoted and suppressed tokens per card
PROMPTS = 5  # most active held-out items per card


@dataclasses.dataclass(frozen=True)
class TokenLogit:
    """One output token and the neuron's direct logit contribution to it per unit of activation."""

    token: int  # vocabulary id
    text: str  # the token decoded alone ("<id>" without a tokenizer)
    logit: float

    def __str__(self) -> str:
        return f"{self.text!r} {self.logit:+.3f}"


@dataclasses.dataclass(frozen=True)
class ActivePrompt:
    """A held-out item on which the neuron is strongly active, at its most active proxy."""

    item: int  # index of the item in the held-out split
    item_id: str  # the item's id in its task file
    proxy: int  # AQUA proxy index (option order) with the largest |activation| of the item
    activation: float  # the neuron's activation at the last prompt position of that proxy
    question: str


@dataclasses.dataclass(frozen=True)
class NeuronCard:
    layer: int
    index: int
    side: str  # "good", "bad", or "" when the neuron is in neither set
    rank: int  # 1 = the strongest of its side (by score); 0 when in neither set
    score: float  # the method's score of the neuron (ACE for neuronllm)
    promoted: tuple[TokenLogit, ...]  # largest direct logit contribution first
    suppressed: tuple[TokenLogit, ...]  # most negative first
    prompts: tuple[ActivePrompt, ...]  # largest |activation| first
    mean_activation: float  # over every held-out proxy

    @property
    def name(self) -> str:
        """ "L:I", as `neuronjax inspect --neuron` takes it."""
        return f"{self.layer}:{self.index}"

    @property
    def title(self) -> str:
        where = f"{self.side} #{self.rank}" if self.side else "in neither set"
        return f"neuron {self.name} ({where}, score {self.score:+.4g})"

    def text(self) -> str:
        """The card as lines of plain text (what `neuronjax inspect` prints)."""
        lines = [self.title,
                 "  promotes:   " + ", ".join(map(str, self.promoted)),
                 "  suppresses: " + ", ".join(map(str, self.suppressed)),
                 f"  mean activation over the held-out proxies: {self.mean_activation:+.4f}",
                 "  most active on:"]  # fmt: skip
        for p in self.prompts:
            lines.append(f"    {p.activation:+8.4f}  item {p.item_id} (proxy {p.proxy}): {shorten(p.question, 100)}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> NeuronCard:
        return cls(
            layer=int(d["layer"]), index=int(d["index"]), side=d["side"], rank=int(d["rank"]), score=float(d["score"]),
            promoted=tuple(TokenLogit(**t) for t in d["promoted"]),
            suppressed=tuple(TokenLogit(**t) for t in d["suppressed"]),
            prompts=tuple(ActivePrompt(**p) for p in d["prompts"]), mean_activation=float(d["mean_activation"]),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class NeuronCards:
    """The cards of one method's top good and bad neurons, read on one task's held-out split."""

    method: str
    task: str
    proxies: int  # held-out proxies the activations were read on
    cards: tuple[NeuronCard, ...]  # good cards by rank, then bad cards by rank

    def side(self, side: str) -> list[NeuronCard]:
        return [c for c in self.cards if c.side == side]

    def find(self, layer: int, index: int) -> NeuronCard | None:
        return next((c for c in self.cards if (c.layer, c.index) == (layer, index)), None)

    def to_json(self) -> dict:
        return {"method": self.method, "task": self.task, "proxies": self.proxies,
                "cards": [c.to_json() for c in self.cards]}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> NeuronCards:
        return cls(d["method"], d["task"], int(d["proxies"]), tuple(NeuronCard.from_json(c) for c in d["cards"]))

    def save(self, path: str) -> None:
        from neuronjax.evaluation.results import write_json

        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str) -> NeuronCards:
        from neuronjax.evaluation.results import read_json

        return cls.from_json(read_json(path))


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters (whitespace collapsed, "..." where cut)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


# -- direct logit effect ---------------------------------------------------------------------------
def direct_logits(lm, neurons: Sequence[tuple[int, int]]) -> np.ndarray:
    """float32 [neuron, vocab]: each neuron's down-projection row times the final norm's scale,
    through the output head (the direct path; see the module docstring). LayerNorm models (GPT-2,
    GPT-NeoX, Phi) centre the row first, as the norm's mean subtraction does; sandwich-norm models
    (Gemma 2/3) scale it by the FFN output norm's weight too."""
    import jax.numpy as jnp

    from neuronjax.distributed import to_host

    model, cfg = lm.module, lm.config
    layers = jnp.asarray([layer for layer, _ in neurons], jnp.int32)
    index = jnp.asarray([i for _, i in neurons], jnp.int32)
    rows = model.blocks.mlp.down[...][layers, index].astype(jnp.float32)  # [neuron, embed]
    if cfg.sandwich_norm:
        rows = rows * _norm_scale(model.blocks.ffn_out_norm, cfg)[layers]
    if cfg.norm_kind == "layer":
        rows = rows - rows.mean(axis=-1, keepdims=True)
    rows = rows * _norm_scale(model.final_norm, cfg)
    return to_host(rows @ model.head_weights.astype(jnp.float32))


def _norm_scale(norm, cfg):
    import jax.numpy as jnp

    w = norm.weight[...].astype(jnp.float32)
    return 1.0 + w if cfg.norm_plus_one else w


def token_text(tokenizer, token: int) -> str:
    """A token decoded alone (its leading space kept); "<id>" without a tokenizer."""
    if tokenizer is None:
        return f"<{token}>"
    return tokenizer.decode([int(token)], skip_special_tokens=False)


def top_tokens(logits: np.ndarray, tokenizer, top: int) -> tuple[tuple[TokenLogit, ...], tuple[TokenLogit, ...]]:
    """(promoted, suppressed): the `top` largest and smallest entries of logits [vocab] (ties to
    the lower id)."""
    logits = np.asarray(logits, np.float32)
    order = np.argsort(-logits, kind="stable")
    low = np.argsort(logits, kind="stable")

    def pick(ids):
        return tuple(TokenLogit(int(t), token_text(tokenizer, t), float(logits[t])) for t in ids[:top])

    return pick(order), pick(low)


# -- where a neuron fires ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Activations:
    """Neurons' activations at the last prompt position of every held-out proxy (unedited model)."""

    values: np.ndarray  # float32 [proxy, neuron]
    item_index: np.ndarray  # int32 [proxy]
    proxy_index: np.ndarray  # int32 [proxy]


def neuron_activations(lm, encoded, neurons: Sequence[tuple[int, int]],
                       progress: Callable[[int], None] | None = None, share_prefix: bool = True) -> Activations:  # fmt: skip
    """The activations of `neurons` [(layer, index)] on every proxy of `encoded` (an EncodedTask)
    at the last prompt position. Per batch the prompt minus its last token builds a cache, the
    prefix common to every row run once (`cached.batch_prefix_cache`; share_prefix=False: every
    row's whole prompt), and the last token runs on it with the activations captured: what a
    full forward gives, for a fraction of the work on a task whose prompts share a demonstration."""
    import jax.numpy as jnp

    from neuronjax import cached
    from neuronjax.distributed import global_batches, to_host

    layers = jnp.asarray([layer for layer, _ in neurons], jnp.int32)
    index = jnp.asarray([i for _, i in neurons], jnp.int32)
    values, items, proxies = [], [], []
    heads: dict = {}  # the task's shared prefix, run once for all its batches
    for batch in global_batches(encoded):
        valid = np.asarray(batch["valid"], bool)
        ids, mask = lm.place(batch["input_ids"]), lm.place(batch["attention_mask"])
        pipeline = encoded.config.pipeline
        cache = cached.batch_prefix_cache(lm, batch, ids, mask, share_prefix, pipeline.suffix_multiple, heads=heads,
                                          cache_multiple=pipeline.cache_multiple)  # fmt: skip
        last = lm.place(np.asarray(batch["input_ids"])[:, -1:])  # one program per cache bucket
        acts = cached.last_position_activations(lm.state, cache, last, layers, index, graphdef=lm.graphdef)
        values.append(to_host(acts)[valid])
        items.append(np.asarray(batch["item_index"])[valid])
        proxies.append(np.asarray(batch["proxy_index"])[valid])
        if progress is not None:
            progress(int(valid.sum()))
    return Activations(np.concatenate(values).astype(np.float32), np.concatenate(items).astype(np.int32),
                       np.concatenate(proxies).astype(np.int32))  # fmt: skip


def most_active(values: np.ndarray, item_index: np.ndarray, proxy_index: np.ndarray,
                top: int) -> list[tuple[int, int, float]]:  # fmt: skip
    """[(item, proxy, activation)] of the `top` items with the largest |activation| of one neuron
    (values [proxy]), each at its proxy of largest |activation|; ties to the lower item, proxy."""
    values = np.asarray(values, np.float32)
    order = np.lexsort((proxy_index, item_index, -np.abs(values)))  # last key sorts first
    out, seen = [], set()
    for p in order:
        item = int(item_index[p])
        if item in seen:
            continue
        seen.add(item)
        out.append((item, int(proxy_index[p]), float(values[p])))
        if len(out) == top:
            break
    return out


# -- cards ---------------------------------------------------------------------------------------
def top_neurons(ns, per_side: int = PER_SIDE) -> list[tuple[str, int, int, int]]:
    """[(side, rank, layer, index)]: a set's `per_side` strongest good neurons (highest score
    first), then its strongest bad ones (lowest first); ties to the lower (layer-major) index."""
    scores = np.asarray(ns.scores, np.float32).reshape(-1)
    out = []
    for side, mask, sign in (("good", ns.good, -1.0), ("bad", ns.bad, 1.0)):
        flat = np.flatnonzero(np.asarray(mask, bool).reshape(-1))
        flat = flat[np.argsort(sign * scores[flat], kind="stable")][:per_side]
        mlp = np.shape(ns.scores)[1]
        out += [(side, rank + 1, int(f // mlp), int(f % mlp)) for rank, f in enumerate(flat)]
    return out


def neuron_place(ns, layer: int, index: int) -> tuple[str, int]:
    """(side, rank) of a neuron in a set: its rank among the set's good (or bad) neurons by score,
    or ("", 0) when it is in neither."""
    for side, mask, sign in (("good", ns.good, -1.0), ("bad", ns.bad, 1.0)):
        if bool(np.asarray(mask)[layer, index]):
            scores = np.asarray(ns.scores, np.float32)
            flat = np.flatnonzero(np.asarray(mask, bool).reshape(-1))
            flat = flat[np.argsort(sign * scores.reshape(-1)[flat], kind="stable")]
            return side, int(np.flatnonzero(flat == layer * scores.shape[1] + index)[0]) + 1
    return "", 0


def make_cards(lm, encoded, neurons: Sequence[tuple[int, int]], places: Sequence[tuple[str, int]],
               scores: Sequence[float], tokens: int = TOKENS, prompts: int = PROMPTS,
               progress: Callable[[int], None] | None = None,
               activations: Activations | None = None) -> list[NeuronCard]:  # fmt: skip
    """One card per neuron: its direct logit effect and the held-out items it fires on most.
    activations: the neurons' activations on `encoded` when already computed (an evaluation
    captures them from its prompt caches, `score_interventions(capture=...)`), else computed here."""
    if not neurons:
        return []
    logits = direct_logits(lm, neurons)
    acts = activations if activations is not None else neuron_activations(lm, encoded, neurons, progress)
    if acts.values.shape != (len(encoded.records), len(neurons)):
        raise ValueError(f"activations of shape {acts.values.shape} given for {len(encoded.records)} proxies x "
                         f"{len(neurons)} neurons")  # fmt: skip
    cards = []
    for j, ((layer, index), (side, rank), score) in enumerate(zip(neurons, places, scores)):
        promoted, suppressed = top_tokens(logits[j], lm.tokenizer, tokens)
        active = tuple(ActivePrompt(item, encoded.items[item].id, proxy, act, encoded.items[item].question)
                       for item, proxy, act in most_active(acts.values[:, j], acts.item_index, acts.proxy_index,
                                                           prompts))  # fmt: skip
        cards.append(NeuronCard(layer, index, side, rank, float(score), promoted, suppressed, active,
                                float(acts.values[:, j].mean()) if len(acts.values) else 0.0))  # fmt: skip
    return cards


def card_neurons(ns, per_side: int = PER_SIDE) -> list[tuple[int, int]]:
    """The neurons [(layer, index)] `build_cards` makes cards of, in its order."""
    return [(layer, index) for _, _, layer, index in top_neurons(ns, per_side)]


def build_cards(lm, encoded, ns, method: str = "", per_side: int = PER_SIDE, tokens: int = TOKENS,
                prompts: int = PROMPTS, progress: Callable[[int], None] | None = None,
                activations: Activations | None = None) -> NeuronCards:  # fmt: skip
    """The cards of a NeuronSet's `per_side` top good and bad neurons on `encoded` (held-out);
    activations: those of `card_neurons(ns, per_side)` on `encoded`, when already computed."""
    chosen = top_neurons(ns, per_side)
    neurons = [(layer, index) for _, _, layer, index in chosen]
    scores = [float(np.asarray(ns.scores)[n]) for n in neurons]
    cards = make_cards(lm, encoded, neurons, [(s, r) for s, r, _, _ in chosen], scores, tokens, prompts, progress,
                       activations)  # fmt: skip
    return NeuronCards(method or ns.method, encoded.config.name, len(encoded.records), tuple(cards))


def main_method(names: Sequence[str]) -> str | None:
    """The method a run's report leads with: neuronllm when present, else the first that is not the
    random control, else the first."""
    names = list(names)
    if "neuronllm" in names:
        return "neuronllm"
    return next((m for m in names if m != "random"), names[0] if names else None)


def parse_neuron(text: str, layers: int | None = None, mlp: int | None = None) -> tuple[int, int]:
    """ "L:I" -> (layer, index), checked against the neuron grid when given."""
    from neuronjax.errors import InputError

    try:
        layer, index = (int(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"--neuron {text!r}: expected LAYER:INDEX, e.g. 12:345") from None
    if layer < 0 or index < 0 or (layers is not None and layer >= layers) or (mlp is not None and index >= mlp):
        raise InputError(f"--neuron {text}: outside the model's {layers} layers x {mlp} neurons (both 0-based)")
    return layer, index


def inspect_neuron(run_dir: str, neuron: str, method: str | None = None, lm=None, tokens: int = TOKENS,
                   prompts: int = PROMPTS, progress: bool = False) -> NeuronCard:  # fmt: skip
    """The card of one neuron ("L:I") of a saved run, read on the run's held-out split; its side,
    rank and score come from `method`'s saved set (default: the run's main method). A card the
    evaluation saved in <run>/cards.json is read from there (cut to `tokens` and `prompts`); any
    other, or one asking for more, is computed (the model is loaded unless `lm` is given, and the
    held-out prompts run once)."""
    from neuronjax.config import config_of_run
    from neuronjax.errors import InputError
    from neuronjax.io.neurons import load_neurons
    from neuronjax.run import CARDS, NEURONS, Progress, encode, load_model_for

    config = config_of_run(run_dir)
    saved = [m for m in config.identify.methods if os.path.exists(os.path.join(run_dir, NEURONS, m))]
    method = method or main_method(saved)
    if method not in saved:
        raise InputError(f"{run_dir}: no saved neurons of method {method!r} (saved: {saved}); "
                         "run `neuronjax identify` first or pick one with --method")  # fmt: skip
    ns = load_neurons(os.path.join(run_dir, NEURONS, method))
    layer, index = parse_neuron(neuron, *np.shape(ns.scores))
    path = os.path.join(run_dir, CARDS)
    if tokens < 1 or prompts < 1:
        raise InputError(f"--tokens {tokens} / --prompts {prompts}: both must be at least 1")
    if os.path.exists(path) and tokens <= TOKENS and prompts <= PROMPTS:
        saved = NeuronCards.load(path)
        card = saved.find(layer, index) if saved.method == method else None
        if card is not None:
            return dataclasses.replace(card, promoted=card.promoted[:tokens], suppressed=card.suppressed[:tokens],
                                       prompts=card.prompts[:prompts])  # fmt: skip
    lm = lm or load_model_for(config)
    encoded = encode(config, lm, "evaluate")
    bar = Progress(len(encoded.records), f"activations {encoded.config.name}", progress)
    try:
        (card,) = make_cards(lm, encoded, [(layer, index)], [neuron_place(ns, layer, index)],
                             [float(np.asarray(ns.scores)[layer, index])], tokens, prompts, bar)  # fmt: skip
    finally:
        bar.close()
    return card
