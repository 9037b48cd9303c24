"""Published-results mode (contrib-style): a numerical reproduction of the Keras package ``caadam`` 0.1.1.

The numbers published for CaAdam (arXiv:2410.24216 and the reference README) were
produced by the Keras 3 package ``caadam`` 0.1.1, which does not implement the
per-layer method as described (see :func:`~caadam_jax.caadam` for that). Reading
its source (``caadam/caadam.py``) and running it shows:

* its table of connection counts is keyed by the *short* variable name
  (``"kernel"``), so every kernel is looked up with the size of the LAST kernel in
  the optimizer's variable order, while ``c_min``, ``c_med`` and ``c_max`` come from
  the true sizes of all tensors with 2+ dimensions;
* tensors with fewer than 2 dimensions (biases, norm scales) are not in the table
  and get ``c = 0``, below ``c_min``: the MinMaxMedian formulas extrapolate and give
  them the largest factor in the network;
* "depth" is the index of the variable in the optimizer's variable list (a layer's
  kernel and bias have different depths) and ``D`` counts every trainable variable;
* Adam is the Keras form, ``alpha = lr*sqrt(1-b2^t)/(1-b1^t)*S``,
  ``theta -= alpha*m/(sqrt(v) + eps)`` with ``eps`` added to the *uncorrected*
  ``sqrt(v)``, and AMSGrad (if enabled) takes the running maximum of the
  uncorrected ``v``, as ``keras.optimizers.Adam`` does.

This subpackage reproduces that behaviour step by step. It reuses the shared path
normalization (:mod:`caadam_jax._paths`) and the shared formula functions
(:mod:`caadam_jax._formulas`); only the per-leaf connection lookup, the
per-variable depth, the variable order and the Keras-form Adam are specific here.
Where the reference divides by zero (``c_med == c_min < c_max`` with some variable
on the lower branch of the formula: it silently produces inf/NaN), this mode raises
a ``ValueError`` instead.

The modules: ``_keras_adam`` (the Keras form of Adam), ``_keras_order`` (the Keras
variable order), ``_keras_records`` (caadam 0.1.1's per-variable records and
statistics), ``_strategy`` (the factors as a transform) and ``_alias`` (the aliases). Like
``optax.contrib``, it is a namespace: ``caadam_jax.published.keras_caadam``. ``import caadam_jax``
imports it (the former top-level names ``caadam_jax.keras_caadam`` and
``caadam_jax.keras_caadam_factors`` still work for one release, with a ``DeprecationWarning``).
"""

from caadam_jax import _describe
from caadam_jax.published import _alias
from caadam_jax.published._alias import keras_caadam
from caadam_jax.published._alias import keras_caadam_factors
from caadam_jax.published._alias import keras_caadam_records
from caadam_jax.published._keras_adam import ScaleByKerasAdamState
from caadam_jax.published._keras_adam import scale_by_keras_adam
from caadam_jax.published._strategy import scale_by_published_strategy

# describe(published=True) reports these factors; the core never imports this subpackage.
_describe.register_published_factors(_alias.factors_by_path)

__all__ = (
    "ScaleByKerasAdamState",
    "keras_caadam",
    "keras_caadam_factors",
    "keras_caadam_records",
    "scale_by_keras_adam",
    "scale_by_published_strategy",
)
