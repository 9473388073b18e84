"""Identification: proxy prompts -> attributions -> complete items -> every method's sets.

- `driver`: `identify` (the whole identification), `item_blocks` (the blocks alone), statistics.
- `collect`: rows held until their item is complete, fixed-size blocks of complete items.
- `state`: the resumable Orbax state of a run in progress.
"""

from neuronjax.config import AttributionConfig
from neuronjax.identify.collect import ItemCollector
from neuronjax.identify.driver import IdentifyStats, attribute_batch, identify, item_blocks, run_meta
from neuronjax.identify.state import Checkpointing, RunState

__all__ = [
    "AttributionConfig", "Checkpointing", "IdentifyStats", "ItemCollector", "RunState", "attribute_batch", "identify",
    "item_blocks", "run_meta",
]  # fmt: skip
