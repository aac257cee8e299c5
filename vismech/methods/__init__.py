"""Built-in methods, one module per family, with their baselines and controls beside them."""
from . import controls

__all__ = ["controls"]
