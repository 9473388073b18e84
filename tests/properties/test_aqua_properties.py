"""Properties of AQUA proxies (neuronjax.tasks.aqua) over generated items and configs:

- every proxy is a permutation of the item's four options, with the same question;
- the gold option sits at the proxy's gold letter;
- the proxies of an item are distinct and put the gold on distinct letters (cyclic: answer,
  answer + 1, ... mod 4);
- there are exactly num_proxies of them, numbered 0..num_proxies-1;
- both schemes are deterministic (random: a function of the seed and the item id only).
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronjax.tasks.aqua import AquaConfig, make_all_proxies, make_proxies, proxy_orders
from neuronjax.tasks.schema import Item

SETTINGS = settings(max_examples=100, deadline=None)

TEXT = st.text(min_size=1, max_size=8)


@st.composite
def items(draw):
    # Options may repeat (MMLU has items with two equal options): positions, not texts, identify them.
    return Item(id=draw(st.text(min_size=1, max_size=10)), question=draw(TEXT),
                options=tuple(draw(st.lists(TEXT, min_size=4, max_size=4))), answer=draw(st.integers(0, 3)))  # fmt: skip


CONFIGS = st.builds(AquaConfig, num_proxies=st.integers(1, 4), kind=st.sampled_from(["cyclic", "random"]),
                    seed=st.integers(0, 2**32))  # fmt: skip


@SETTINGS
@given(item=items(), config=CONFIGS)
def test_every_proxy_is_a_permutation_with_the_gold_at_its_letter(item, config):
    for proxy in make_proxies(item, config):
        assert sorted(proxy.order) == [0, 1, 2, 3]
        assert proxy.options == tuple(item.options[o] for o in proxy.order)
        assert sorted(proxy.options) == sorted(item.options)
        assert proxy.order[proxy.answer] == item.answer  # the gold option itself, not just its text
        assert proxy.options[proxy.answer] == item.gold_text
        assert (proxy.item_id, proxy.question) == (item.id, item.question)


@SETTINGS
@given(item=items(), config=CONFIGS)
def test_proxies_are_distinct_with_distinct_gold_letters(item, config):
    proxies = make_proxies(item, config)
    assert [p.proxy_index for p in proxies] == list(range(config.num_proxies))
    assert len({p.order for p in proxies}) == config.num_proxies
    assert len({p.answer for p in proxies}) == config.num_proxies
    if config.kind == "cyclic":
        assert [p.answer for p in proxies] == [(item.answer + k) % 4 for k in range(config.num_proxies)]
        assert proxies[0].order == (0, 1, 2, 3)  # proxy 0 is the item as written


@SETTINGS
@given(item=items(), config=CONFIGS)
def test_schemes_are_deterministic(item, config):
    assert make_proxies(item, config) == make_proxies(item, config)
    # the random scheme depends on the seed and the id only, not on the texts or the question
    other = Item(id=item.id, question="different", options=("w", "x", "y", "z"), answer=item.answer)
    assert [p.order for p in make_proxies(other, config)] == [p.order for p in make_proxies(item, config)]


@SETTINGS
@given(many=st.lists(items(), min_size=1, max_size=5, unique_by=lambda i: i.id), config=CONFIGS)
def test_all_proxies_are_item_major(many, config):
    proxies = make_all_proxies(many, config)
    assert len(proxies) == len(many) * config.num_proxies
    assert [p.item_id for p in proxies] == [i.id for i in many for _ in range(config.num_proxies)]


def test_random_scheme_depends_on_the_seed():
    ids = [f"item{k}" for k in range(20)]
    orders = {seed: [proxy_orders(1, i, AquaConfig(4, "random", seed)) for i in ids] for seed in (0, 1)}
    assert orders[0] != orders[1]
    assert orders[0] == [proxy_orders(1, i, AquaConfig(4, "random", 0)) for i in ids]


@pytest.mark.parametrize("n", [0, 5, -1])
def test_number_of_proxies_out_of_range(n):
    with pytest.raises(ValueError, match=rf"aqua.num_proxies: expected 1..4 \(one distinct gold letter per proxy\), got {n}"):
        proxy_orders(0, "x", AquaConfig(num_proxies=n))
