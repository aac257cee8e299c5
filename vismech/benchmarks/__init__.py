"""One LightningModule per task."""
from .base import Benchmark
from .classifier_ablation import ClassifierAblation

__all__ = ["Benchmark", "ClassifierAblation"]
