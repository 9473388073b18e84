"""One process of the determinism test: identification on the planted model with a shuffled
pipeline and a seeded random control, for each requested (pipeline seed, random seed).

    python -m tests.methods.determinism_worker OUT_NPZ PIPELINE_SEED:RANDOM_SEED ...

Writes, for every run "P:R" and method m, the arrays "P:R/m/scores", ".../good", ".../bad".
"""

import dataclasses
import sys

import jax

jax.config.update("jax_default_matmul_precision", "highest")

import numpy as np  # noqa: E402

from neuronjax.identify import AttributionConfig, identify  # noqa: E402
from neuronjax.methods import LAPE, KnowledgeNeurons, MeanActivation, NeuronLLM, Random  # noqa: E402
from neuronjax.tasks.pipeline import PipelineConfig  # noqa: E402
from tests.methods import planted  # noqa: E402

ITEMS, BATCH = 12, 4


def encoded_task(pipeline_seed: int):
    """The planted task, batched in a seeded shuffled order."""
    task = planted.task(num_items=ITEMS, batch_size=BATCH)
    pipeline = PipelineConfig(batch_size=BATCH, shuffle=True, seed=pipeline_seed)
    return dataclasses.replace(task, config=dataclasses.replace(task.config, pipeline=pipeline))


def run(lm, pipeline_seed: int, random_seed: int) -> dict:
    methods = [NeuronLLM(k=2, z=6), KnowledgeNeurons(k=2), LAPE(k=2), MeanActivation(k=3), Random(k=2, seed=random_seed)]
    sets = identify(lm, encoded_task(pipeline_seed), methods, AttributionConfig("ig", steps=3, groups=1), block_items=3)
    return {f"{n}/{k}": getattr(ns, k) for n, ns in sets.items() for k in ("scores", "good", "bad")}


def main(out: str, *runs: str) -> None:
    lm = planted.model()
    arrays = {}
    for spec in runs:
        pipeline_seed, random_seed = (int(x) for x in spec.split(":"))
        arrays.update({f"{spec}/{k}": v for k, v in run(lm, pipeline_seed, random_seed).items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
