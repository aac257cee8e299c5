"""Metrics with metadata: direction (higher or lower is better), units and a version fingerprint."""
from .base import ItemMetric, fingerprint_of
from .classification import Accuracy, TrueClassProbDrop
from .paths import JointAttributionScore, ProbabilityRatio, Top1Change

__all__ = ["ItemMetric", "fingerprint_of", "Accuracy", "TrueClassProbDrop", "JointAttributionScore",
           "ProbabilityRatio", "Top1Change"]
