"""Metrics with metadata: direction (higher or lower is better), units and a version fingerprint."""
from . import attack  # noqa: F401  (registers the attack and side-effect metrics)
from .base import ItemMetric, fingerprint_of
from .classification import Accuracy, TrueClassProb
from .distribution import CMMD
from .generation import (FID, ClipImageSimilarity, ClipScore, FairnessDiscrepancy, NoFaceRate, OtherAccuracy,
                         TargetAccuracy, TargetProbability)
from .paths import ClassSimilarity, JointAttributionScore, PathConsistency, ProbabilityRatio, Top1Change

__all__ = ["ItemMetric", "fingerprint_of", "Accuracy", "TrueClassProb", "JointAttributionScore",
           "ProbabilityRatio", "Top1Change", "PathConsistency", "ClassSimilarity", "FID", "CMMD", "ClipImageSimilarity", "ClipScore",
           "FairnessDiscrepancy", "NoFaceRate", "OtherAccuracy", "TargetAccuracy", "TargetProbability"]
