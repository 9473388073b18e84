"""An identification with checkpoints that can kill itself (SIGKILL) part-way.

    python -m tests.methods.resume_worker OUT_NPZ CHECKPOINT_DIR KILL_AT_BATCH

KILL_AT_BATCH > 0: the process sends itself SIGKILL when that batch has been attributed (before
its checkpoint, if one was due); 0: run to the end and write the scores and masks to OUT_NPZ.
"""

import os
import signal
import sys

import jax

jax.config.update("jax_default_matmul_precision", "highest")

import numpy as np  # noqa: E402

from neuronjax.identify import AttributionConfig, Checkpointing, identify  # noqa: E402
from neuronjax.methods import LAPE, KnowledgeNeurons, MeanActivation, NeuronLLM  # noqa: E402
from tests.methods import planted  # noqa: E402


def main(out: str, checkpoint_dir: str, kill_at: str) -> None:
    kill_at, seen = int(kill_at), [0]

    def progress(n: int) -> None:
        seen[0] += 1
        if seen[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    methods = [NeuronLLM(k=2, z=6), KnowledgeNeurons(k=2), LAPE(k=2), MeanActivation(k=3)]
    task = planted.task(num_items=14, batch_size=4)  # 42 proxies: 11 batches, items split across batches
    ckpt = Checkpointing(checkpoint_dir, every=2) if checkpoint_dir != "-" else None
    sets = identify(planted.model(), task, methods, AttributionConfig("ig", steps=4), block_items=3,
                    progress=progress, checkpoint=ckpt)  # fmt: skip
    arrays = {f"{n}/{k}": getattr(ns, k) for n, ns in sets.items() for k in ("scores", "good", "bad")}
    np.savez(out, items=sets["neuronllm"].meta["stats"]["items"], **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
