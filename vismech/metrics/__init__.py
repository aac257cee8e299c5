"""Metrics with metadata: direction (higher or lower is better), units and a version fingerprint."""
from .base import ItemMetric, fingerprint_of
from .classification import Accuracy, TrueClassProbDrop

__all__ = ["ItemMetric", "fingerprint_of", "Accuracy", "TrueClassProbDrop"]
