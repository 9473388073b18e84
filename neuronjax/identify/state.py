"""An identification's resumable state: Orbax checkpoints of every method's state and of the
rows still waiting for their item, keyed by everything that must match for a run to continue."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from typing import Sequence

import jax
import numpy as np

from neuronjax.config import AttributionConfig
from neuronjax.distributed import to_host
from neuronjax.errors import ConfigError, SaveError
from neuronjax.identify.collect import IdentifyStats, ItemCollector
from neuronjax.io.neurons import model_fingerprint
from neuronjax.methods.base import Method, method_record


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often a resumable identification saves its state."""

    directory: str
    every: int = 20  # global batches between checkpoints
    keep: int = 2  # newest checkpoints kept


def run_key(lm, encoded, methods: Sequence[Method], attribution: AttributionConfig, block_items: int) -> dict:
    """What must match for a checkpoint to be continued: same model, data, batching and methods."""
    return {
        "model": model_fingerprint(lm),
        "task": dataclasses.asdict(encoded.config),
        "split": encoded.split.to_dict(),
        "part": encoded.part,
        "proxies": len(encoded.records),
        "global_batch_rows": encoded.config.pipeline.batch_size * jax.process_count(),
        "methods": [method_record(m) for m in methods],
        # sharing the prompt prefix changes the scores only by rounding: either setting continues
        "attribution": {k: v for k, v in dataclasses.asdict(attribution).items() if k != "share_prefix"},
        "block_items": block_items,
    }


class RunState:
    """An identification's resumable state in an Orbax CheckpointManager directory.

    One checkpoint = the methods' states and the waiting rows (arrays) + the step, statistics
    and run key (JSON). Orbax writes each checkpoint to a temporary folder and renames it when
    complete, so a process killed while saving leaves the previous checkpoint as the newest.
    """

    def __init__(self, config: Checkpointing, key: dict):
        import orbax.checkpoint as ocp

        if config.every < 1:
            raise ConfigError(f"identify.checkpoint_every = {config.every}: expected >= 1")
        self.config, self.key = config, _plain(key)
        self.manager = ocp.CheckpointManager(
            os.path.abspath(config.directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=config.keep, create=True, enable_async_checkpointing=False),
        )

    def save(self, step: int, states: dict, stats: IdentifyStats, collector: ItemCollector) -> None:
        import orbax.checkpoint as ocp

        waiting = collector.to_arrays()
        arrays = {"methods": {n: _leaves(s) for n, s in states.items()}}
        if len(waiting["item"]):
            arrays["waiting"] = waiting
        meta = {"step": step, "stats": dataclasses.asdict(stats), "key": self.key, "waiting_rows": len(waiting["item"])}
        threads = set(threading.enumerate())
        try:
            self.manager.save(step, args=ocp.args.Composite(arrays=ocp.args.PyTreeSave(arrays), meta=ocp.args.JsonSave(meta)))
            self.manager.wait_until_finished()
        except (OSError, ValueError, RuntimeError) as err:  # a full disk: OSError, or the array store's error
            # When one part of the checkpoint fails, Orbax's writes of the other part go on in
            # background threads; wait for them, so that a retry does not race them.
            _join_new_threads(threads, timeout=30.0)
            kept = self.manager.latest_step()  # Orbax renames a checkpoint into place only once complete
            raise SaveError(
                f"{self.config.directory}: saving the resumable state at batch {step} failed: "
                f"{type(err).__name__}: {err}. The newest complete checkpoint is "
                + (f"batch {kept}; a restart continues from it" if kept is not None else "none; a restart begins again"),
                getattr(err, "errno", None),
            ) from err

    def restore(self, states: dict):
        """(states, step, stats dict, waiting arrays) of the newest checkpoint, or None."""
        import orbax.checkpoint as ocp

        step = self.manager.latest_step()
        if step is None:
            return None
        where = os.path.join(self.config.directory, str(step))
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta["key"] != self.key:
            diff = sorted(k for k in set(meta["key"]) | set(self.key) if meta["key"].get(k) != self.key.get(k))
            raise ConfigError(
                f"{where}: this checkpoint belongs to another identification (different {', '.join(diff)}); "
                "delete the folder (or run with --force) to start again"
            )
        arrays = self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.PyTreeRestore()))["arrays"]
        restored = {}
        for name, state in states.items():
            leaves, treedef = jax.tree.flatten(state)
            saved = arrays["methods"][name]
            restored[name] = jax.tree.unflatten(treedef, [np.asarray(saved[str(i)]) for i in range(len(leaves))])
        waiting = {k: np.asarray(v) for k, v in arrays.get("waiting", {}).items()}
        if meta["waiting_rows"] == 0:
            waiting = {"order": [], "item": [], "proxy": [], "correct": []}
        return restored, int(meta["step"]), meta["stats"], waiting

    def clear(self) -> None:
        self.manager.close()
        shutil.rmtree(self.config.directory, ignore_errors=True)


def _join_new_threads(before: set, timeout: float) -> None:
    """Join the non-daemon threads started since `before` (at most `timeout` seconds in all)."""
    deadline = time.monotonic() + timeout
    for thread in set(threading.enumerate()) - before:
        if thread.daemon:
            continue
        while True:
            try:  # enumerate() also lists a thread whose start() has not yet returned: join refuses it
                thread.join(max(0.0, deadline - time.monotonic()))
                break
            except RuntimeError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.005)


def _leaves(state) -> dict[str, np.ndarray]:
    return {str(i): to_host(x) for i, x in enumerate(jax.tree.leaves(state))}


def _plain(x):
    """JSON round-trip form (tuples -> lists), so a saved key compares equal to a fresh one."""
    import json

    return json.loads(json.dumps(x, default=str))


