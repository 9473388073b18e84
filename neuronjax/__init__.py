"""neuronjax: find the good and bad FFN neurons of a causal LLM for a task (NeuronLLM,
arXiv 2601.04548), save them, and steer the model through them."""

__version__ = "0.1.0"

from neuronjax.intervention import Intervention
from neuronjax.lm import LanguageModel
from neuronjax.loader import default_model_path, load_config, load_model
from neuronjax.models.config import ModelConfig

__all__ = ["Intervention", "LanguageModel", "ModelConfig", "default_model_path", "load_config", "load_model"]
