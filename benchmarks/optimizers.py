"""The optimizer cells of the training benchmarks and the factors they apply.

:data:`OPTIMIZERS` holds every cell of ``benchmarks.reproduce``: Keras-form Adam at 1x,
2x and 5x the learning rate (the controls the published experiments lacked), CaAdam in
the published mode (``keras_caadam``, the Keras package ``caadam`` 0.1.1) and as
described (``caadam``), AdamW and ADAS. Every learning rate is injected
(``optax.inject_hyperparams``) so that reduce-on-plateau can change it per seed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import caadam_jax

from .models import ModelSpec


def keras_adam(learning_rate):
  # Keras-form Adam (eps 1e-7 on the uncorrected sqrt(v)) through the public API:
  # the published mode with the depth strategy and g = 0 has every factor (1+0)**x = 1.
  return caadam_jax.published.keras_caadam(learning_rate, strategy="depth", scaling_factor=0.0)


def _published(strategy):
  def make(learning_rate):
    return caadam_jax.published.keras_caadam(learning_rate, strategy=strategy)

  return make


def _described(strategy, scaling_factor=None):
  def make(learning_rate, structure=None):
    return caadam_jax.caadam(
        learning_rate, strategy=strategy, scaling_factor=scaling_factor, structure=structure
    )

  return make


def _adamw(learning_rate):
  return optax.adamw(learning_rate, weight_decay=1e-4)


@dataclasses.dataclass
class OptSpec:
  """One optimizer cell of the benchmarks.

  Attributes:
    name: the name results are stored under.
    factory: ``factory(learning_rate)`` builds the optimizer (``factory()`` when
      ``has_lr`` is False).
    lr_mult: the base learning rate (and its plateau floor) is multiplied by this.
    has_lr: whether the optimizer has a global learning rate (reduce-on-plateau
      scales it; ADAS has none).
    matched: the learning-rate-matched Adam control of a CaAdam cell.
    description: one line for the reports.
    takes_structure: ``factory`` takes the model's ``structure`` (the as-described
      cells: ``caadam`` refuses to guess a depth order from layer names alone).
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  lr_mult: float = 1.0
  has_lr: bool = True
  matched: str | None = None
  description: str = ""
  takes_structure: bool = False

  def factory_for(self, structure: caadam_jax.Structure | None) -> Callable:
    """``factory`` with the model's ``structure`` bound where it ``takes_structure``."""
    if self.takes_structure:
      return functools.partial(self.factory, structure=structure)
    return self.factory

  def make(self, base_lr, structure: caadam_jax.Structure | None = None):
    """The optimizer at ``base_lr`` (times ``lr_mult``), its learning rate injected.

    ``structure`` (``ModelSpec.structure()``) is passed on where ``takes_structure``.
    """
    if not self.has_lr:
      return self.factory()
    return optax.inject_hyperparams(self.factory_for(structure))(
        learning_rate=base_lr * self.lr_mult
    )


OPTIMIZERS = {
    s.name: s
    for s in [
        OptSpec(
            "adam",
            keras_adam,
            description="Keras-form Adam (eps 1e-7 on the uncorrected sqrt(v)), lr 1e-3: "
            "the published baseline",
        ),
        OptSpec(
            "adam_x2",
            keras_adam,
            2.0,
            description="the same Adam at 2x the learning rate (schedule and floor x2)",
        ),
        OptSpec(
            "adam_x5",
            keras_adam,
            5.0,
            description="the same Adam at 5x the learning rate (schedule and floor x5)",
        ),
        OptSpec(
            "keras_caadam_additive",
            _published("additive"),
            matched="adam_x2",
            description="published mode (caadam 0.1.1), additive g=0.95",
        ),
        OptSpec(
            "keras_caadam_multiplicative",
            _published("multiplicative"),
            matched="adam_x5",
            description="published mode (caadam 0.1.1), multiplicative g=5",
        ),
        OptSpec(
            "keras_caadam_depth",
            _published("depth"),
            matched="adam_x2",
            description="published mode (caadam 0.1.1), depth g=1",
        ),
        OptSpec(
            "caadam_additive",
            _described("additive"),
            takes_structure=True,
            matched="adam_x2",
            description="as described (per layer), additive g=0.95, optax Adam eps 1e-8",
        ),
        OptSpec(
            "caadam_multiplicative",
            _described("multiplicative"),
            takes_structure=True,
            matched="adam_x5",
            description="as described (per layer), multiplicative g=5, optax Adam eps 1e-8",
        ),
        OptSpec(
            "caadam_depth",
            _described("depth"),
            takes_structure=True,
            matched="adam_x2",
            description="as described (per layer), depth g=1, optax Adam eps 1e-8",
        ),
        OptSpec(
            "adamw",
            _adamw,
            description="optax.adamw(lr, weight_decay=1e-4) (eps 1e-8, decay scaled by lr)",
        ),
        OptSpec(
            "adas",
            lambda: caadam_jax.adas(),
            has_lr=False,
            description="ADAS defaults (lr=1e-3 initial step sizes); no global learning "
            "rate, so reduce-on-plateau has nothing to scale (not applied)",
        ),
    ]
}
REFERENCES = ("adam", "adam_x2", "adam_x5")

# The scaling factor g tuned with the learning rate: a small grid around each as-described
# strategy's default (the default is the plain caadam_<strategy> cell). Additive stops
# short of g = 0, where every factor is 1 and CaAdam is Adam.
G_GRID: dict[caadam_jax.StrategyName, tuple[float, ...]] = {
    "additive": (0.5, 0.8, 0.95),
    "multiplicative": (2.0, 5.0, 10.0),
    "depth": (0.5, 1.0, 2.0),
}


def g_variant_name(strategy: caadam_jax.StrategyName, g: float) -> str:
  """``caadam_<strategy>`` at its default g, else ``caadam_<strategy>_g<g>``."""
  if g == caadam_jax.STRATEGIES[strategy].default_scaling_factor:
    return f"caadam_{strategy}"
  return f"caadam_{strategy}_g{g:g}"


G_VARIANTS: dict[str, tuple[caadam_jax.StrategyName, float]] = {
    g_variant_name(s, g): (s, g)
    for s, grid in G_GRID.items()
    for g in grid
    if g_variant_name(s, g) != f"caadam_{s}"
}


def g_variant_spec(name: str) -> OptSpec:
  """The as-described cell ``name`` of :data:`G_VARIANTS` (another g than the default)."""
  strategy, g = G_VARIANTS[name]
  return OptSpec(
      name,
      _described(strategy, g),
      takes_structure=True,
      description=f"as described (per layer), {strategy} g={g:g}, optax Adam eps 1e-8",
  )


def set_learning_rate(opt_state, lr: np.ndarray):
  hp = opt_state.hyperparams
  new = jnp.asarray(lr, dtype=hp["learning_rate"].dtype).reshape(hp["learning_rate"].shape)
  return opt_state._replace(hyperparams={**hp, "learning_rate": new})


def measured_factors(model: ModelSpec, opt_name: str) -> dict[str, float]:
  """Per-leaf step multiplier of a CaAdam cell relative to its Adam form, at step 1."""
  params, _ = model.init(jax.random.key(0))
  grads = jax.tree.map(lambda a: jnp.full_like(a, 0.5), params)
  spec = OPTIMIZERS[opt_name]
  if opt_name.startswith("keras_caadam"):
    ref = keras_adam(1.0)
  elif opt_name.startswith("caadam"):
    ref = optax.adam(1.0)
  else:
    return {}
  tx = spec.factory_for(model.structure())(1.0)
  u, _ = tx.update(grads, tx.init(params), params)
  r, _ = ref.update(grads, ref.init(params), params)
  out = {}
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(u), jax.tree.leaves(r), strict=False):
    key = "/".join(str(getattr(k, "key", k)) for k in path)
    out[key] = float(np.mean(np.asarray(a) / np.asarray(b)))
  return out
