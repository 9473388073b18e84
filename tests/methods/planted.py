"""A tiny Llama-type model whose last layer has neurons planted by hand, and a task for it.

The output head reads five unit directions of the residual stream: token GOLD (the first token
of every item's gold option), DISTRACTOR[0..2] (the first tokens of the three distractors) and
FILLER (a token that is never an option). Every token's embedding carries a large constant on
dimension 0, so each planted neuron (gate and up weights reading dimension 0) is strongly and
steadily active at every position; its down-projection row writes into one head direction:

    GOOD  neurons write + into GOLD's direction         (help the gold option)
    BAD   neurons write + into DISTRACTOR[0]'s direction (push one distractor)
    FILL  neurons write + into FILLER's direction         (shift probability mass to a
                                                          non-option token; no option preference)

Under the contrastive F, GOOD > 0, BAD < 0 and FILL ~ 0. Under the probability of the gold
token over the whole vocabulary, FILL is strongly negative (it takes most of the mass) while
BAD is barely negative (the distractor stays improbable over the vocabulary).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuronjax.lm import LanguageModel
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder
from neuronjax.tasks.aqua import AquaConfig
from neuronjax.tasks.build import EncodedTask
from neuronjax.tasks.config import TaskConfig
from neuronjax.tasks.encoding import ProxyRecord
from neuronjax.tasks.pipeline import PipelineConfig
from neuronjax.tasks.prompts import PromptConfig
from neuronjax.tasks.splits import Split

LAYERS, MLP, EMBED, VOCAB = 2, 48, 32, 64
GOLD, DISTRACTOR, FILLER = 10, (11, 12, 13), 20
GOOD = ((1, 5), (1, 17))
BAD = ((1, 7), (1, 30))
FILL = ((1, 9), (1, 40))
STRENGTH = {"good": 0.06, "bad": 0.05, "fill": 0.08}  # down-projection weight into the head direction
DIRECTION = {GOLD: 1, DISTRACTOR[0]: 2, DISTRACTOR[1]: 3, DISTRACTOR[2]: 4, FILLER: 5}


# The mixture-of-experts variant: 4 experts of 12 neurons, 2 per token; the router of the last layer
# sends every token to experts 0 and 1 (weights 1/2 each), so the planted neurons sit there, plus a
# planted "good" neuron in expert 2, which no token reaches.
MOE = dict(experts=4, per_token=2)
MOE_GOOD, MOE_BAD, MOE_FILL = ((1, 5), (1, 17)), ((1, 7), (1, 19)), ((1, 9), (1, 21))
MOE_UNROUTED = ((1, 30),)


def mask(neurons) -> np.ndarray:
    """bool [LAYERS, MLP], True at the (layer, index) pairs given (e.g. GOOD, BAD)."""
    m = np.zeros((LAYERS, MLP), bool)
    for layer, i in neurons:
        m[layer, i] = True
    return m


def model(seed: int = 0, moe: bool = False) -> LanguageModel:
    """The planted Llama; moe=True: the same with a mixture-of-experts FFN (see MOE)."""
    cfg = ModelConfig(model_type="llama", vocab_size=VOCAB, hidden_size=EMBED, intermediate_size=MLP,
                      num_layers=LAYERS, num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=False,
                      **(dict(num_experts=MOE["experts"], experts_per_token=MOE["per_token"]) if moe else {}))  # fmt: skip
    graphdef, state = nnx.split(Decoder(cfg, rngs=nnx.Rngs(seed)))
    p = nnx.to_pure_dict(state)
    embed = np.array(p["embed"])
    embed[:, 0] += 4.0  # a steady direction every planted neuron reads
    embed[:, 1:6] = 0.0  # the head directions start empty
    head = np.array(p["lm_head"])
    head[1:6, :] = 0.0
    for token, d in DIRECTION.items():
        head[:, token] = 0.0
        head[d, token] = 6.0
    mlp = p["blocks"]["mlp"]  # every layer's FFN, stacked [layers, ...]; the planted neurons are in the last
    gate, up, down = (np.array(mlp[k][LAYERS - 1]) for k in ("gate", "up", "down"))
    planted = ((GOOD, 1, STRENGTH["good"]), (BAD, 2, STRENGTH["bad"]), (FILL, 5, STRENGTH["fill"]))
    if moe:  # routing weights of 1/2 halve each neuron's effect: twice the strength
        planted = ((MOE_GOOD + MOE_UNROUTED, 1, 2 * STRENGTH["good"]), (MOE_BAD, 2, 2 * STRENGTH["bad"]),
                   (MOE_FILL, 5, 2 * STRENGTH["fill"]))  # fmt: skip
        router = np.array(mlp["router"][LAYERS - 1])
        router[:] = 0.0
        router[0, :2], router[0, 2:] = 1.0, -1.0  # the steady dimension 0 picks experts 0 and 1, equally
        mlp["router"] = jnp.asarray(mlp["router"]).at[LAYERS - 1].set(router)
    for neurons, direction, strength in planted:
        for _, i in neurons:
            gate[:, i] = 0.0
            up[:, i] = 0.0
            gate[0, i] = up[0, i] = 1.0
            down[i, :] = 0.0
            down[i, direction] = strength
    for k, v in (("gate", gate), ("up", up), ("down", down)):
        mlp[k] = jnp.asarray(mlp[k]).at[LAYERS - 1].set(v)
    p["embed"], p["lm_head"] = jnp.asarray(embed), jnp.asarray(head)
    nnx.replace_by_pure_dict(state, p)
    return LanguageModel(graphdef, state, cfg, None, None, jnp.float32, "planted-llama")


def task(num_items: int = 12, num_proxies: int = 3, seed: int = 0, batch_size: int = 4) -> EncodedTask:
    """Items whose gold option starts with GOLD and whose distractors start with DISTRACTOR;
    AQUA cyclic proxies move the gold option over the letters."""
    rng = np.random.default_rng(seed)
    options = np.array([GOLD, *DISTRACTOR], np.int32)
    records = []
    for item in range(num_items):
        prompt = rng.integers(30, VOCAB, size=int(rng.integers(6, 12))).astype(np.int32)
        answer = int(rng.integers(0, 4))
        base = np.roll(options, answer)  # item's own order: gold at letter `answer`
        for k in range(num_proxies):
            order = np.roll(np.arange(4), k)
            opts = base[order]
            records.append(ProxyRecord(item_index=item, proxy_index=k, gold=int(np.flatnonzero(opts == GOLD)[0]),
                                       prompt_ids=prompt, option_tokens=opts[:, None].copy(),
                                       continuation=np.zeros((4, 0), np.int32), first_token_tie=False))  # fmt: skip
    config = TaskConfig(name="planted", source="builtin:planted", prompt=PromptConfig(),
                        aqua=AquaConfig(num_proxies=num_proxies), pipeline=PipelineConfig(batch_size=batch_size))  # fmt: skip
    ids = tuple(f"planted-{i}" for i in range(num_items))
    split = Split(seed=0, identify=ids, demo=(), evaluate=())
    return EncodedTask(config, None, split, "identify", ids, tuple(records), 0)
