"""A two-option and a six-option task end to end on a tiny random Llama: read a task file, split
it (answer-disjoint), make AQUA proxies, encode, attribute (against the naive full-prompt rerun),
identify and evaluate (the unedited accuracy and letter shares against a plain forward per proxy)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from neuronjax.attribution.engine import PromptBatch, attribute
from neuronjax.attribution.naive import naive_attribute
from neuronjax.evaluation import EvaluateConfig, evaluate_sets
from neuronjax.identify import AttributionConfig, identify
from neuronjax.lm import LanguageModel
from neuronjax.methods import NeuronLLM, Random
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import Decoder
from neuronjax.tasks.aqua import AquaConfig
from neuronjax.tasks.build import encode_task
from neuronjax.tasks.config import TaskConfig
from neuronjax.tasks.pipeline import PipelineConfig
from neuronjax.tasks.prompts import PromptConfig
from neuronjax.tasks.splits import SplitConfig
from tests.tasks.helpers import CharTokenizer

WORDS = ("apple", "berry", "cherry", "date", "elder", "fig")


@pytest.fixture(scope="module")
def lm():
    cfg = ModelConfig(model_type="llama", vocab_size=258, hidden_size=32, intermediate_size=48, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=False)  # fmt: skip
    graphdef, state = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))
    return LanguageModel(graphdef, state, cfg, CharTokenizer(), None, jnp.float32, "tiny-llama")


def _task_config(tmp_path, k, answer_format, proxies):
    rows = [{"question": f"Which is number {j}?", "options": [f"{w}{j}" for w in WORDS[:k]], "answer": j % k}
            for j in range(16)]  # fmt: skip
    path = tmp_path / f"k{k}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return TaskConfig(name=f"k{k}", source=str(path), split=SplitConfig(num_demo=2, eval_fraction=0.4, disjoint="answer"),
                      prompt=PromptConfig(answer_format=answer_format), aqua=AquaConfig(num_proxies=proxies),
                      pipeline=PipelineConfig(batch_size=8, bucket_multiple=64))  # fmt: skip


def _naive_scores(lm, encoded) -> tuple[np.ndarray, np.ndarray]:
    """Option scores [proxy, k] and golds, one plain forward per proxy prompt."""
    scores, gold = [], []
    for r in encoded.records:
        ids = jnp.asarray(r.prompt_ids[None])
        last = np.asarray(lm.logits(ids, jnp.ones_like(ids)))[0, -1].astype(np.float64)
        log_probs = last - np.log(np.exp(last - last.max()).sum()) - last.max()
        scores.append([np.log(np.exp(log_probs[[t for t in row if t >= 0]]).sum()) for row in r.option_tokens])
        gold.append(r.gold)
    return np.array(scores), np.array(gold)


@pytest.mark.parametrize("k, answer_format, proxies", [(2, "option_text", 2), (6, "letter", 3)])
def test_k_option_task_end_to_end(lm, tmp_path, k, answer_format, proxies):
    config = _task_config(tmp_path, k, answer_format, proxies)
    ident = encode_task(config, lm.tokenizer, "identify")
    held = encode_task(config, lm.tokenizer, "evaluate")
    assert ident.task.num_options == k
    # split: 16 items, 2 demos, round(14 x 0.4) = 6 held out (every gold text its own group)
    assert (len(ident.items), len(held.items), ident.split.groups) == (8, 6, (6, 10))
    held_golds = {i.gold_text for i in held.items}
    assert not held_golds & {i.gold_text for i in ident.items + tuple(ident.split.items(ident.task, "demo"))}
    # AQUA: each item's proxies put the gold on `proxies` distinct letters among the k
    letters: dict[int, set] = {}
    for r in ident.records:
        assert r.option_tokens.shape[0] == k
        letters.setdefault(r.item_index, set()).add(r.gold)
    assert all(len(v) == proxies for v in letters.values()) and len(letters) == 8

    # attribution of a k-option batch equals the naive full-prompt rerun
    batch = next(ident.batches(0, 1))
    assert batch["option_tokens"].shape[1] == k
    pb = PromptBatch(batch["input_ids"][:2], batch["attention_mask"][:2], batch["option_tokens"][:2], batch["gold"][:2])
    fast = attribute(lm, pb, "ig", steps=2)
    slow = naive_attribute(lm, pb, "ig", steps=2)
    assert fast.option_scores.shape == (2, k)
    scale = np.abs(np.asarray(slow.scores)).max()
    np.testing.assert_allclose(np.asarray(fast.scores), np.asarray(slow.scores), atol=1e-4 * scale, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(fast.f), np.asarray(slow.f), atol=1e-5)

    # identify, then evaluate on the held-out items
    sets = identify(lm, ident, [NeuronLLM(k=4, z=8), Random(k=4, seed=1)], AttributionConfig("ig", steps=2),
                    block_items=4)  # fmt: skip
    assert sets["neuronllm"].good.shape == (2, 48) and int(sets["neuronllm"].good.sum()) <= 4
    ev = evaluate_sets(
        lm, held, sets, EvaluateConfig(modes=("suppress_good", "enhancer"), random_seeds=2, bootstrap=50)
    )
    scores, gold = _naive_scores(lm, held)
    others = np.where(np.eye(k, dtype=bool)[gold], -np.inf, scores).max(axis=1)
    correct = scores[np.arange(len(gold)), gold] > others
    assert ev.items == 6 and ev.proxies == 6 * proxies
    assert ev.baseline.accuracy.value == pytest.approx(correct.mean())
    shares = np.bincount(scores.argmax(axis=1), minlength=k) / len(gold)
    np.testing.assert_allclose(ev.baseline.letters, shares, atol=1e-4)  # length k
    assert len(ev.baseline.letters) == k
    tested = [r for r in ev.sets() if not r.empty]
    assert tested and all(r.vs_random.accuracy.p_adjusted is not None for r in tested)
    assert ev.correction["method"] == "holm"
