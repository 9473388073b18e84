"""Would the same neurons come back from other identification items? (`neuronjax stability`)

The run config's identification items (its split, in split order) are cut into N disjoint blocks
of equal size (the first N x size items; the rest are left out and counted), and every configured
method identifies its K sets on each block in turn, with the config's attribution and K. With
several split seeds (`split_seeds`), the same is done on each seed's split: blocks of one seed are
disjoint, blocks of different seeds may share items (their number is recorded per pair).

For every method and side (good / bad) and every pair of replicates, the Jaccard index of the two
sets, |A ∩ B| / |A ∪ B|, is compared with its value for random sets with the same per-layer counts:

- chance is computed exactly, not simulated: in layer l with n neurons, two sets of a_l and b_l
  neurons drawn uniformly at random share a hypergeometric number of neurons,
  P(I_l = i) = C(a_l, i) C(n - a_l, b_l - i) / C(n, b_l); layers are independent, so the total
  intersection I = sum_l I_l has the convolution of the per-layer distributions, and the chance
  Jaccard of the pair is E[I / (|A| + |B| - I)] over it (|A|, |B| fixed by the counts). The same
  distribution gives the pair's exact p-value P(I >= observed intersection) (the Jaccard index
  grows with I at fixed sizes, so this is P(chance Jaccard >= observed));
- per (method, side, scope) the pairs' Jaccard indices are averaged, with a 95% percentile
  interval over `bootstrap` resamples of the pairs (seeded). Pairs share replicates, so they are not
  independent: the interval shows the spread over pairs, not a sampling interval of independent
  replications. The largest pair p-value says whether every pair is above chance.

A pair whose two sets are both empty (a method that found no bad neurons) has no Jaccard index and
is left out of the mean. The random control (`random`) is drawn with seed + replicate number, so
it is an empirical chance reference beside the exact one (with one seed, equal per-layer counts
would give the very same draw in every replicate).

    result = stability(config, lm, replicates=3)      # writes <run_dir>/stability.json
    print(result.table())

- `overlap`: the Jaccard index, its exact chance distribution, the interval over pairs.
- `results`: the typed result (stability.json), the pair comparison and the table.
- `replicates`: item blocks, identification on each, the whole measurement.
"""

from neuronjax.stability.overlap import (
    chance_jaccard,
    chance_p,
    hypergeometric,
    intersection_distribution,
    jaccard,
    mean_interval,
)
from neuronjax.stability.replicates import identify_replicates, parse_seeds, replicate_blocks, stability, subset
from neuronjax.stability.results import (
    ACROSS,
    SIDES,
    STABILITY,
    WITHIN,
    Pair,
    Replicate,
    SideStability,
    Stability,
    compare,
    load_stability,
    stability_table,
)

__all__ = [
    "ACROSS", "SIDES", "STABILITY", "WITHIN", "Pair", "Replicate", "SideStability", "Stability", "chance_jaccard",
    "chance_p", "compare", "hypergeometric", "identify_replicates", "intersection_distribution", "jaccard",
    "load_stability", "mean_interval", "parse_seeds", "replicate_blocks", "stability", "stability_table", "subset",
]  # fmt: skip
