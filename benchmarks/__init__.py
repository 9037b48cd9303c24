"""The benchmarks of ``caadam_jax``: one command-line module per study, shared building blocks.

Run a study from the repository root as ``python -m benchmarks.<study>`` (for example
``python -m benchmarks.reproduce --task california --quick``). The studies:

* :mod:`benchmarks.reproduce`: the published CaAdam experiments with the missing
  learning-rate controls;
* :mod:`benchmarks.sweep`: best against best over learning-rate sweeps, with a placebo;
* :mod:`benchmarks.adas_mnist`: ADAS against Adam on MNIST;
* :mod:`benchmarks.step_cost`, :mod:`benchmarks.compile_constants`,
  :mod:`benchmarks.trace_cost`: the cost of a step, of compiling it, of tracing a model;
* :mod:`benchmarks.published_factors`, :mod:`benchmarks.lm_factors`,
  :mod:`benchmarks.describe_models`: the factors the strategies give real models.

The building blocks of the training studies: :mod:`benchmarks.models` (Flax models),
:mod:`benchmarks.optimizers` (the optimizer cells), :mod:`benchmarks.tasks` (data and
protocol), :mod:`benchmarks.training` (all seeds of a cell trained at once),
:mod:`benchmarks.callbacks` (Keras 3 early stopping and reduce-on-plateau),
:mod:`benchmarks.stats` (paired statistics), :mod:`benchmarks.placebo` (the sweep's
placebo control), :mod:`benchmarks.report` (tables and plots)
and :mod:`benchmarks._shared` (results files and the machine description). The data
loaders are ``examples/data_files.py``, shared with the examples.

Reference: Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
methods", arXiv:2410.24216, 2024.
"""
