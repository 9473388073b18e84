"""One process of a (possibly) multi-process identification + evaluation on the planted model.

    python -m tests.distributed.worker OUT_DIR MESH [CHECKPOINT_DIR]

MESH: "data" (every device on the data axis) or "data_tensor" (tensor axis of 2). The process
joins the others through the NEURONJAX_* variables (none set: one process). Global batches have
8 rows whatever the process count, so one process and two give the same batches. Process 0
writes OUT_DIR/result.npz (scores and masks of every method, evaluation accuracies).
"""

import json
import os
import sys

import jax

from neuronjax import distributed

how = distributed.initialize()
jax.config.update("jax_default_matmul_precision", "highest")

import numpy as np  # noqa: E402

from neuronjax import sharding as sh  # noqa: E402
from neuronjax.evaluation import EvaluateConfig, evaluate_sets  # noqa: E402
from neuronjax.identify import AttributionConfig, Checkpointing, identify  # noqa: E402
from neuronjax.methods import LAPE, KnowledgeNeurons, NeuronLLM  # noqa: E402
from tests.methods import planted  # noqa: E402


def main(out_dir: str, mesh_kind: str, checkpoint_dir: str | None = None) -> None:
    shape = {"tensor": 2} if mesh_kind == "data_tensor" else {}
    mesh = sh.make_mesh(shape)
    lm = planted.model().on_mesh(mesh)
    task = planted.task(num_items=10, batch_size=8 // jax.process_count())
    methods = [NeuronLLM(k=2, z=6), KnowledgeNeurons(k=2), LAPE(k=2)]
    ckpt = Checkpointing(checkpoint_dir, every=1) if checkpoint_dir else None
    sets = identify(lm, task, methods, AttributionConfig("ig", steps=4), block_items=4, checkpoint=ckpt)
    evaluation = evaluate_sets(lm, task, {"neuronllm": sets["neuronllm"]}, EvaluateConfig(random_seeds=1, bootstrap=20)).to_json()
    if distributed.is_primary():
        arrays = {}
        for name, ns in sets.items():
            arrays[f"{name}/scores"], arrays[f"{name}/good"], arrays[f"{name}/bad"] = ns.scores, ns.good, ns.bad
        arrays["accuracy"] = np.asarray([r["accuracy"]["value"] for r in evaluation["rows"]])
        os.makedirs(out_dir, exist_ok=True)
        np.savez(os.path.join(out_dir, "result.npz"), **arrays)
        with open(os.path.join(out_dir, "info.json"), "w") as f:
            json.dump({"how": how, "processes": jax.process_count(), "devices": jax.device_count(),
                       "stats": sets["neuronllm"].meta["stats"]}, f)  # fmt: skip
    distributed.barrier("worker-done")


if __name__ == "__main__":
    main(*sys.argv[1:])
