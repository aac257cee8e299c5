"""One LightningModule per task."""
from .base import Benchmark
from .bias import BiasBenchmark
from .concept import ConceptBenchmark
from .neuron_path import NeuronPathBenchmark
from .pruning import PruningBenchmark

__all__ = ["Benchmark", "BiasBenchmark", "ConceptBenchmark", "NeuronPathBenchmark", "PruningBenchmark"]
