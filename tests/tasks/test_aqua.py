import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronjax.tasks.aqua import AquaConfig, make_all_proxies, make_proxies, proxy_orders
from neuronjax.tasks.schema import Item

ITEM = Item(id="i", question="Q", options=("w", "x", "y", "z"), answer=1)


def test_cyclic_by_hand():
    proxies = make_proxies(ITEM, AquaConfig(num_proxies=3, kind="cyclic"))
    # shift k: letter j shows option (j - k) mod 4
    assert [p.options for p in proxies] == [("w", "x", "y", "z"), ("z", "w", "x", "y"), ("y", "z", "w", "x")]
    assert [p.answer for p in proxies] == [1, 2, 3]
    assert [p.proxy_index for p in proxies] == [0, 1, 2]
    assert all(p.options[p.answer] == "x" for p in proxies)


@settings(max_examples=60, deadline=None)
@given(
    answer=st.integers(0, 3),
    n=st.integers(1, 4),
    kind=st.sampled_from(["cyclic", "random"]),
    seed=st.integers(0, 1000),
    item_id=st.text(min_size=1, max_size=8),
)
def test_proxies_move_gold_to_distinct_letters_and_keep_the_option_set(answer, n, kind, seed, item_id):
    item = Item(id=item_id, question="Q", options=("o0", "o1", "o2", "o3"), answer=answer)
    proxies = make_proxies(item, AquaConfig(num_proxies=n, kind=kind, seed=seed))
    assert len(proxies) == n
    assert len({p.answer for p in proxies}) == n
    for p in proxies:
        assert sorted(p.options) == sorted(item.options)
        assert p.options[p.answer] == item.gold_text
        assert tuple(item.options[o] for o in p.order) == p.options


def test_random_is_seeded_per_item():
    config = AquaConfig(num_proxies=4, kind="random", seed=5)
    assert proxy_orders(2, "a", config) == proxy_orders(2, "a", config)
    orders = {tuple(proxy_orders(2, f"id{k}", config)) for k in range(20)}
    assert len(orders) > 1  # differs between items


def test_all_proxies_item_major():
    items = [ITEM, Item(id="j", question="R", options=("a", "b", "c", "d"), answer=0)]
    proxies = make_all_proxies(items)
    assert [(p.item_id, p.proxy_index) for p in proxies] == [("i", 0), ("i", 1), ("i", 2), ("j", 0), ("j", 1), ("j", 2)]


@pytest.mark.parametrize("n", [0, 5])
def test_num_proxies_out_of_range(n):
    with pytest.raises(ValueError, match="aqua.num_proxies: expected 1..4"):
        make_proxies(ITEM, AquaConfig(num_proxies=n))


def test_unknown_kind():
    with pytest.raises(ValueError, match="aqua.kind"):
        make_proxies(ITEM, AquaConfig(kind="shuffle"))
