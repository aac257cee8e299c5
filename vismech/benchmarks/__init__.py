"""One LightningModule per task."""
from .base import Benchmark
from .neuron_path import NeuronPathBenchmark
from .pruning import PruningBenchmark

__all__ = ["Benchmark", "NeuronPathBenchmark", "PruningBenchmark"]
