"""Built-in methods, one module per family, with their baselines and controls beside them."""
from . import controls, neuron_path

__all__ = ["controls", "neuron_path"]
