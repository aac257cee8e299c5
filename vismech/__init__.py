"""vismech: a benchmark suite for mechanistic-interpretability and editing methods on vision models.

Layers: subjects and sites (`vismech.subject`) -> methods (`vismech.method`, `vismech.methods`) ->
benchmarks (`vismech.benchmarks`) -> result records (`vismech.results`) -> leaderboard (`vismech.leaderboard`).
"""

__version__ = "0.1.0"
