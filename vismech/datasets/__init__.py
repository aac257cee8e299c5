"""Item sets with stable ids: prompts and seeds, image folders, the mini world."""
from .digits import DigitsItems
from .world import WorldConfig, WorldItems

__all__ = ["DigitsItems", "WorldConfig", "WorldItems"]
