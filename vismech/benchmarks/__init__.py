"""One LightningModule per task."""
from .base import Benchmark
from .classifier_ablation import ClassifierAblation
from .neuron_path import NeuronPathBenchmark

__all__ = ["Benchmark", "ClassifierAblation", "NeuronPathBenchmark"]
