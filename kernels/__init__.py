"""Pallas kernels for neuronjax's hot paths, each next to a pure-jnp reference.

``shared_prefix_attention``: many query variants (integrated-gradient steps, stacked
interventions) attending to one shared prompt KV cache; what ``neuronjax.models.layers.attend``
computes when given ``past``.

Every kernel takes ``impl`` ("auto", "reference", "pallas", "interpret"); ``choose`` resolves it:
"auto" means the environment variable ``NEURONJAX_KERNELS`` when set, else the Pallas kernel on a
TPU and the reference elsewhere (on the CPU, one-token steps of ``shared_prefix_attention`` run
``one_token``: the reference's math laid out for that case, with a written backward pass). ``python -m neuronjax.kernels.bench`` times both on the current backend.
"""

from neuronjax.kernels.choice import ENV_VAR, IMPLS, choose
from neuronjax.kernels.shared_prefix_attention import reference as shared_prefix_attention_reference
from neuronjax.kernels.shared_prefix_attention import shared_prefix_attention  # noqa: I001 (after the alias)

__all__ = ["ENV_VAR", "IMPLS", "choose", "shared_prefix_attention", "shared_prefix_attention_reference"]
