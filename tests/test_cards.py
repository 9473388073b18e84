"""Neuron cards against independent references: the promoted / suppressed tokens of SmolLM2's
neurons against a numpy computation from the GGUF file's own tensors (read with the `gguf`
package), and the held-out prompts a neuron fires on against activations computed by
transformers' PyTorch Llama (a hook on the down projection's input), through a whole run, its
cards.json, its report and `neuronjax inspect`."""

import dataclasses
import json

import numpy as np
import pytest

from neuronjax.cards import NeuronCards, direct_logits, most_active, neuron_activations, parse_neuron, top_tokens
from neuronjax.cli import main
from neuronjax.errors import InputError


def test_most_active_keeps_each_item_once_at_its_strongest_proxy():
    values = np.array([0.1, -0.9, 0.3, 0.5, 0.5, -0.2, 0.05], np.float32)
    items = np.array([0, 0, 0, 1, 1, 2, 3])
    proxies = np.array([0, 1, 2, 0, 1, 0, 0])
    # by |activation|: item 0 at proxy 1 (-0.9), item 1 at proxy 0 (0.5, tie to the lower proxy),
    # item 2 (-0.2), item 3 (0.05)
    assert most_active(values, items, proxies, 3) == [
        (0, 1, pytest.approx(-0.9)),
        (1, 0, 0.5),
        (2, 0, pytest.approx(-0.2)),
    ]
    assert len(most_active(values, items, proxies, 10)) == 4


def test_top_tokens_and_parse_neuron():
    promoted, suppressed = top_tokens(np.array([0.5, -2.0, 3.0, 0.5, -2.0]), None, 2)
    assert [(t.token, t.logit) for t in promoted] == [(2, 3.0), (0, 0.5)]  # ties to the lower id
    assert [t.token for t in suppressed] == [1, 4] and promoted[0].text == "<2>"
    assert parse_neuron("17:1446", 30, 1536) == (17, 1446)
    for bad in ("17", "a:b", "30:0", "0:1536", "-1:3"):
        with pytest.raises(InputError):
            parse_neuron(bad, 30, 1536)


# -- the embedded SmolLM2 against its GGUF tensors -----------------------------------------------
@pytest.mark.real_model
def test_promoted_tokens_equal_a_numpy_computation_from_the_gguf_file():
    gguf = pytest.importorskip("gguf")
    import neuronjax

    lm = neuronjax.load_model()
    neurons = [(0, 7), (12, 947), (17, 1446), (29, 19)]
    got = direct_logits(lm, neurons)
    reader = gguf.GGUFReader(neuronjax.default_model_path())
    tensors = {t.name: t for t in reader.tensors}

    def read(name):  # numpy order: [rows, cols] = the GGUF shape reversed
        t = tensors[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)

    scale = read("output_norm.weight")  # [embed]
    head = read("token_embd.weight")  # [vocab, embed]: tied to the embedding
    assert head.shape == (49152, 576)
    for j, (layer, i) in enumerate(neurons):
        down = read(f"blk.{layer}.ffn_down.weight")  # [embed, mlp]
        want = head @ (down[:, i] * scale)  # [vocab]
        np.testing.assert_allclose(got[j], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        promoted, suppressed = top_tokens(got[j], lm.tokenizer, 10)
        top, bottom = np.argsort(-want, kind="stable")[:10], np.argsort(want, kind="stable")[:10]
        assert [t.token for t in promoted] == top.tolist()
        assert [t.token for t in suppressed] == bottom.tolist()
        assert [t.text for t in promoted] == [lm.tokenizer.decode([int(t)]) for t in top]
        np.testing.assert_allclose([t.logit for t in promoted], want[top], rtol=1e-4)


# -- a run on a tiny model: where the neurons fire --------------------------------------------------
def _torch_activations(tiny_dir, records) -> np.ndarray:
    """float [proxy, layers, mlp]: the down projection's input at each prompt's last token, by
    transformers' PyTorch Llama, one unpadded prompt at a time."""
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(str(tiny_dir), torch_dtype=torch.float32).eval()
    seen = {}
    hooks = [layer.mlp.down_proj.register_forward_hook(lambda mod, args, out, j=j: seen.__setitem__(j, args[0]))
             for j, layer in enumerate(model.model.layers)]  # fmt: skip
    out = []
    with torch.no_grad():
        for r in records:
            model(input_ids=torch.as_tensor(np.asarray(r.prompt_ids, np.int64))[None])
            out.append(np.stack([seen[j][0, -1].numpy() for j in range(len(model.model.layers))]))
    for h in hooks:
        h.remove()
    return np.stack(out).astype(np.float64)


def _reference_top(acts: np.ndarray, records, items, top: int) -> list[tuple[str, int, float]]:
    """(item id, proxy, activation) of the `top` items with the largest |activation|, each at its
    proxy of largest |activation| (ties: the lower item, then proxy), by plain Python."""
    best = {}
    for a, r in zip(acts, records):
        key = (-abs(a), r.proxy_index)
        if r.item_index not in best or key < best[r.item_index][0]:
            best[r.item_index] = (key, r.proxy_index, a)
    order = sorted(best, key=lambda item: (best[item][0][0], item))
    return [(items[i].id, best[i][1], best[i][2]) for i in order[:top]]


@pytest.fixture(scope="module")
def tiny_run(tiny_dir, tmp_path_factory):
    from tests.tiny_models import world_facts_run_config

    out = tmp_path_factory.mktemp("runs")
    path = world_facts_run_config(
        out, tiny_dir,
        identify={"methods": ["neuronllm", "random"], "k": 5, "z": 10, "attribution": {"method": "ig", "steps": 1, "groups": 1}},
        evaluate={"modes": ["suppress_good", "suppress_bad"], "random_seeds": 1, "bootstrap": 20},
        task_overrides={"split.max_identify": 3, "split.max_eval": 5},
    )  # fmt: skip
    assert main(["run", path, "--quiet", "--force"]) == 0
    return out / "tiny"


@pytest.fixture(scope="module")
def held_out(tiny_run, tiny_dir):
    """The run's held-out proxies and their activations by the PyTorch reference."""
    from neuronjax.config import config_of_run
    from neuronjax.run import encode, load_model_for

    config = config_of_run(str(tiny_run))
    lm = load_model_for(config)
    encoded = encode(config, lm, "evaluate")
    return lm, encoded, _torch_activations(tiny_dir, encoded.records)


@pytest.mark.torch
@pytest.mark.real_model
@pytest.mark.parametrize("share_prefix", [True, False])
def test_activations_equal_the_pytorch_model(held_out, share_prefix):
    from neuronjax.cached import split_prefix
    from neuronjax.distributed import global_batches

    lm, encoded, want = held_out
    if share_prefix:  # the shared path is the one taken: the held-out batches share a prefix
        assert all(split_prefix(b["input_ids"], b["attention_mask"]) is not None for b in global_batches(encoded))
    neurons = [(0, 0), (0, 23), (1, 5), (1, 17)]
    got = neuron_activations(lm, encoded, neurons, share_prefix=share_prefix)
    order = [(r.item_index, r.proxy_index) for r in encoded.records]
    rows = [order.index((i, p)) for i, p in zip(got.item_index, got.proxy_index)]
    assert sorted(rows) == list(range(len(encoded.records)))  # every held-out proxy exactly once
    for j, (layer, i) in enumerate(neurons):
        # measured 1.5e-6 (shared prefix) and 1.3e-6 (whole prompts) at most, on activations up to 2.3
        np.testing.assert_allclose(got.values[:, j], want[rows, layer, i], rtol=1e-6, atol=5e-6)


@pytest.mark.torch
@pytest.mark.real_model
def test_run_writes_cards_whose_prompts_equal_a_direct_computation(tiny_run, held_out):
    from neuronjax.io.neurons import load_neurons

    lm, encoded, acts = held_out
    cards = NeuronCards.load(str(tiny_run / "cards.json"))
    ns = load_neurons(str(tiny_run / "neurons" / "neuronllm"))
    assert cards.method == "neuronllm" and cards.task == "world_facts" and cards.proxies == len(encoded.records) == 15
    # the strongest good neurons by score first, then the strongest bad ones
    scores = np.asarray(ns.scores)
    good = sorted(ns.good_neurons, key=lambda n: -scores[n])
    bad = sorted(ns.bad_neurons, key=lambda n: scores[n])
    assert [(c.layer, c.index) for c in cards.side("good")] == good[:8]
    assert [(c.layer, c.index) for c in cards.side("bad")] == bad[:8]
    logits = direct_logits(lm, [(c.layer, c.index) for c in cards.cards])
    for j, card in enumerate(cards.cards):
        assert card.score == pytest.approx(float(scores[card.layer, card.index]))
        a = acts[:, card.layer, card.index]
        want = _reference_top(a, encoded.records, encoded.items, 5)
        assert [(p.item_id, p.proxy) for p in card.prompts] == [(i, p) for i, p, _ in want]
        # captured by the evaluation from its prompt caches: measured 4.3e-6 at most
        np.testing.assert_allclose([p.activation for p in card.prompts], [x for _, _, x in want], rtol=1e-6, atol=1.2e-5)
        assert card.prompts[0].question == next(it.question for it in encoded.items if it.id == want[0][0])
        assert card.mean_activation == pytest.approx(a.mean(), rel=1e-4, abs=1e-5)
        assert [t.token for t in card.promoted] == np.argsort(-logits[j], kind="stable")[:10].tolist()
    # the report leads with the finding, shows the cards, and ends with the settings
    report = (tiny_run / "report.md").read_text()
    assert report.index("### Results") < report.index("### Neuron cards") < report.index("### Settings")
    assert f"| {cards.side('good')[0].name} (#1) |" in report
    page = (tiny_run / "report" / "index.html").read_text()
    assert page.count('<div class="card good">') == len(cards.side("good")) and 'class="lead"' in page


@pytest.mark.torch
@pytest.mark.real_model
def test_inspect_prints_a_card(tiny_run, held_out, capsys):
    _, encoded, acts = held_out
    assert main(["inspect", str(tiny_run), "--neuron", "1:3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].startswith("neuron 1:3 (") and "promotes:" in lines[1] and "suppresses:" in lines[2]
    want = _reference_top(acts[:, 1, 3], encoded.records, encoded.items, 5)
    shown = [line.split()[:3] for line in lines[5:]]  # activation, "item", id
    assert [(float(a), item_id) for a, _, item_id in shown] == [(pytest.approx(x, abs=1e-4), i) for i, _, x in want]
    # a neuron with a saved card: the same card as cards.json's
    card = NeuronCards.load(str(tiny_run / "cards.json")).cards[0]
    assert main(["inspect", str(tiny_run), "--neuron", card.name, "--quiet"]) == 0
    assert capsys.readouterr().out == card.text() + "\n"
    # fewer tokens and prompts: the saved card cut; more: computed again
    assert main(["inspect", str(tiny_run), "--neuron", card.name, "--tokens", "3", "--prompts", "2", "--quiet"]) == 0
    cut = dataclasses.replace(
        card, promoted=card.promoted[:3], suppressed=card.suppressed[:3], prompts=card.prompts[:2]
    )
    assert capsys.readouterr().out == cut.text() + "\n" and len(cut.promoted) == 3 and len(cut.prompts) == 2
    assert main(["inspect", str(tiny_run), "--neuron", "1:3", "--tokens", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert main(["inspect", str(tiny_run), "--neuron", "2:0"]) == 2
    assert "outside the model's 2 layers x 24 neurons" in capsys.readouterr().err
    assert main(["inspect", str(tiny_run), "--neuron", "0:0", "--method", "lape"]) == 2
    assert "no saved neurons of method 'lape'" in capsys.readouterr().err


@pytest.mark.torch
@pytest.mark.real_model
def test_inspect_more_tokens_than_saved_against_the_pytorch_weights(tiny_run, tiny_dir, held_out):
    import torch
    import transformers

    from neuronjax.cards import inspect_neuron

    lm, _, _ = held_out
    model = transformers.LlamaForCausalLM.from_pretrained(str(tiny_dir), torch_dtype=torch.float32)
    layer, i = 1, 3
    with torch.no_grad():  # the down projection's column i times the final norm's scale, through the head
        row = model.model.layers[layer].mlp.down_proj.weight[:, i].double() * model.model.norm.weight.double()
        want = (model.lm_head.weight.double() @ row).numpy()
    card = inspect_neuron(str(tiny_run), f"{layer}:{i}", lm=lm, tokens=12, prompts=7)
    assert [t.token for t in card.promoted] == np.argsort(-want, kind="stable")[:12].tolist()
    assert [t.token for t in card.suppressed] == np.argsort(want, kind="stable")[:12].tolist()
    np.testing.assert_allclose([t.logit for t in card.promoted], np.sort(want)[::-1][:12], rtol=1e-4, atol=1e-6)
    assert len(card.prompts) == 5  # every held-out item (5) once


@pytest.mark.torch
@pytest.mark.real_model
def test_evaluate_cards_sets_how_many_cards(tiny_run, tmp_path):
    import shutil

    from neuronjax.config import EvaluateConfig
    from neuronjax.errors import ConfigError

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "evaluate.cards=2", "--quiet"]) == 0
    cards = NeuronCards.load(str(run / "cards.json"))
    assert [c.rank for c in cards.side("good")] == [1, 2] and [c.rank for c in cards.side("bad")] == [1, 2]
    # none: no cards.json (the earlier one removed, it is not of this evaluation), said in the report
    assert main(["evaluate", str(run), "evaluate.cards=0", "--quiet"]) == 0
    assert not (run / "cards.json").exists()
    assert "No neuron cards: " in (run / "report.md").read_text()
    with pytest.raises(ConfigError, match="cards = -1"):
        EvaluateConfig(cards=-1)


def test_cards_round_trip_through_json(tmp_path):
    from neuronjax.cards import ActivePrompt, NeuronCard, TokenLogit

    card = NeuronCard(3, 7, "bad", 2, -0.25, (TokenLogit(5, " Paris", 1.5),), (TokenLogit(9, "|", -2.0),),
                      (ActivePrompt(4, "t:0004", 1, -0.75, "What is the capital of France?"),), 0.125)  # fmt: skip
    cards = NeuronCards("neuronllm", "world_facts", 12, (card,))
    cards.save(str(tmp_path / "cards.json"))
    assert NeuronCards.load(str(tmp_path / "cards.json")) == cards
    assert json.loads((tmp_path / "cards.json").read_text())["cards"][0]["promoted"][0]["text"] == " Paris"
    assert card.text().splitlines()[0] == "neuron 3:7 (bad #2, score -0.25)"
