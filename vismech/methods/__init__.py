"""Built-in methods, one module per family, with their baselines and controls beside them."""
from . import bias_baselines, cad, concept_baselines, controls, difflens, neuron_path

__all__ = ["bias_baselines", "cad", "concept_baselines", "controls", "difflens", "neuron_path"]
