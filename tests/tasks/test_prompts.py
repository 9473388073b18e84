import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronjax.tasks.aqua import make_proxies
from neuronjax.tasks.prompts import PromptConfig, answer_separator, build_prompt, choose_demo, question_block
from neuronjax.tasks.schema import Item
from tests.tasks.helpers import CharTokenizer, make_items

ITEM = Item(id="i", question="Capital of France?", options=("Rome", "Paris", "Oslo", "Bern"), answer=1)
DEMO = Item(id="d", question="Capital of Peru?", options=("Lima", "Quito", "Cusco", "Bogota"), answer=0)


def test_letter_prompt_by_hand():
    proxy = make_proxies(ITEM)[1]  # shift 1: Bern, Rome, Paris, Oslo
    text = build_prompt(proxy, DEMO, PromptConfig(answer_format="letter", rule="Pick one."))
    assert text == (
        "Pick one.\n\n"
        "Question: Capital of Peru?\nA. Lima\nB. Quito\nC. Cusco\nD. Bogota\nAnswer: A\n\n"
        "Question: Capital of France?\nA. Bern\nB. Rome\nC. Paris\nD. Oslo\nAnswer:"
    )


def test_option_text_options_first_by_hand():
    proxy = make_proxies(ITEM)[0]
    config = PromptConfig(answer_format="option_text", rule="R", layout="options_first", cue="So:")
    assert build_prompt(proxy, DEMO, config) == (
        "R\n\nA. Lima\nB. Quito\nC. Cusco\nD. Bogota\nQuestion: Capital of Peru?\nSo: Lima\n\n"
        "A. Rome\nB. Paris\nC. Oslo\nD. Bern\nQuestion: Capital of France?\nSo:"
    )


def test_default_rule_depends_on_format():
    proxy = make_proxies(ITEM)[0]
    assert "letter of the correct option" in build_prompt(proxy, DEMO, PromptConfig(answer_format="letter"))
    assert "text of the correct option" in build_prompt(proxy, DEMO, PromptConfig(answer_format="option_text"))


def test_chat_template_turns():
    proxy = make_proxies(ITEM)[0]
    text = build_prompt(
        proxy, DEMO, PromptConfig(answer_format="letter", rule="R", chat_template=True), CharTokenizer()
    )
    assert text.startswith("<system>R</system><user>Question: Capital of Peru?")
    assert "<assistant>A</assistant><user>Question: Capital of France?" in text
    assert text.endswith("Answer:</user><assistant>")
    assert answer_separator(text) == " " and answer_separator("x\n") == ""


def test_chat_template_needs_a_template():
    class NoTemplate(CharTokenizer):
        chat_template = None

    with pytest.raises(ValueError, match="has no chat template"):
        build_prompt(make_proxies(ITEM)[0], DEMO, PromptConfig(chat_template=True), NoTemplate())


def test_item_cannot_be_its_own_demo():
    with pytest.raises(ValueError, match="cannot be its own demonstration"):
        build_prompt(make_proxies(ITEM)[0], ITEM, PromptConfig())


@settings(max_examples=50, deadline=None)
@given(
    n_demos=st.integers(2, 6),
    pick=st.integers(0, 5),
    policy=st.sampled_from(["fixed", "per_item"]),
    seed=st.integers(0, 99),
)
def test_demo_never_equals_the_item(n_demos, pick, policy, seed):
    demos = make_items(n_demos, prefix="d")
    config = PromptConfig(demo_policy=policy, demo_seed=seed)
    # The item may itself be one of the demonstrations (e.g. when prompting demo items).
    item_id = demos[pick % n_demos].id
    demo = choose_demo(item_id, demos, config)
    assert demo.id != item_id and demo in demos
    assert choose_demo("other", demos, config) in demos


def test_fixed_policy_shares_one_demo_per_item_per_item_policy_varies():
    demos = make_items(5, prefix="d")
    fixed = {choose_demo(f"i{k}", demos, PromptConfig(demo_policy="fixed")).id for k in range(30)}
    varied = {choose_demo(f"i{k}", demos, PromptConfig(demo_policy="per_item")).id for k in range(30)}
    assert fixed == {"d0"} and len(varied) > 1


def test_no_other_demo_is_an_error():
    with pytest.raises(ValueError, match="holds no other item"):
        choose_demo("d0", make_items(1, prefix="d"), PromptConfig())


def test_question_block_layouts():
    assert question_block("Q", "abcd") == "Question: Q\nA. a\nB. b\nC. c\nD. d"
    assert question_block("Q", "abcd", "Q:", "options_first") == "A. a\nB. b\nC. c\nD. d\nQ: Q"


@pytest.mark.parametrize(
    "field, value", [("answer_format", "words"), ("option_score", "max"), ("layout", "x"), ("demo_policy", "all")]
)
def test_bad_prompt_config(field, value):
    with pytest.raises(ValueError, match=f"prompt.{field}"):
        PromptConfig(**{field: value})
