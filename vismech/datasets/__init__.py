"""Item sets with stable ids: prompts and seeds, image folders, the mini world."""
from .world import WorldConfig, WorldItems

__all__ = ["WorldConfig", "WorldItems"]
