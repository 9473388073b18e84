"""neuronjax: find the good and bad FFN neurons of a causal LLM for a task (NeuronLLM,
arXiv 2601.04548), save them, and steer the model through them."""

__version__ = "0.1.0"

from neuronjax.platforms import prefer_cpu_without_accelerators

prefer_cpu_without_accelerators()  # before JAX is imported (see neuronjax.platforms)

from neuronjax.checkout import route_kernels_past_checkout  # noqa: E402

route_kernels_past_checkout()  # before transformers is imported (see neuronjax.checkout)

from neuronjax.intervention import Intervention  # noqa: E402
from neuronjax.lm import LanguageModel  # noqa: E402
from neuronjax.loader import default_model_path, load_config, load_model  # noqa: E402
from neuronjax.models.config import ModelConfig  # noqa: E402
from neuronjax.notebook import Run, load_run  # noqa: E402

__all__ = ["Intervention", "LanguageModel", "ModelConfig", "Run", "default_model_path", "load_config", "load_model",
           "load_run"]  # fmt: skip
