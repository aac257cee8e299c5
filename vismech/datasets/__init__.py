"""Item sets with stable ids: prompts and seeds, image folders, the mini world."""
from .digits import DigitsItems

__all__ = ["DigitsItems"]
