"""Every optimizer of caadam_jax that the common checks run on: ``ENTRIES``, a plain table.

An :class:`Entry` is a name, a factory and what the checks need to know about it. A
factory is called with no arguments to build the optimizer, and with keyword overrides
to change hyperparameters (``factory(learning_rate=0.01)``). Factories are
``functools.partial`` objects of a constructor with keyword arguments, so that
``optax.inject_hyperparams(factory.func)(**factory.keywords)`` rebuilds the same
optimizer with injected hyperparameters. ``test_common.py`` parametrizes its tests over
``ENTRIES``; ``NO_ARGUMENT_SCALERS`` lists the transforms built with no arguments.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import optax

import caadam_jax

Factory = Callable[..., optax.GradientTransformation]

# Learning rate used by the default entries (the optimization checks were tuned for it).
LR = 0.1


@dataclasses.dataclass(frozen=True)
class Entry:
  """One optimizer and what the common checks need to know about it.

  Attributes:
    name: the test id.
    factory: builds the optimizer (keyword overrides change hyperparameters).
    steps: optimization steps on the parabola targets.
    rosenbrock_lr: the ``learning_rate`` on the Rosenbrock targets (Adam at a
      constant rate oscillates in the valley when a structure factor of ~2-5
      multiplies it); None keeps the factory's.
    rtol: relative tolerance of the optimization checks (optax uses 3e-2).
    atol: absolute tolerance of the optimization checks (optax uses 3e-2).
    supports_complex: whether complex parameters are supported.
    inject_values: hyperparameters (factory keyword -> value) the
      inject_hyperparams equality check sets; they must be numeric keywords of
      the factory.
    schedule: ``(keyword, schedule, plain_value)`` for the scheduled
      hyperparameter check: the keyword follows ``schedule`` through
      ``inject_hyperparams``; ``plain_value(step)`` is what the plain factory
      must be given to reproduce step ``step``. None skips the check.
    reference: a factory of the plain Optax optimizer this entry equals when
      every structure factor is 1 (a bare array) and whose state has the same
      leaves (``optax.adam`` for the CaAdam family). None skips the checks
      that need it.
    per_layer: whether the entry's step size differs between layers of the
      layered targets (a check that the layered targets are not trivial).
  """

  name: str
  factory: Factory
  steps: int = 3000
  rosenbrock_lr: float | None = 0.02
  rtol: float = 3e-2
  atol: float = 3e-2
  supports_complex: bool = True
  inject_values: Mapping[str, Any] = dataclasses.field(
      default_factory=lambda: {"learning_rate": 0.05}
  )
  schedule: tuple[str, Callable[[Any], Any], Callable[[int], float]] | None = None
  reference: Factory | None = None
  per_layer: bool = True


# Optimization steps on the Rosenbrock targets, every entry.
ROSENBROCK_STEPS = 30000

# ----------------------------------------------------------------------------
# Structure transforms chained as Adam -> structure -> learning rate.

STRUCTURE_TRANSFORMS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "scale_by_connection_minmaxmedian": caadam_jax.scale_by_connection_minmaxmedian,
    "scale_by_depth": caadam_jax.scale_by_depth,
    "scale_by_strategy": caadam_jax.scale_by_strategy,
}


def adam_structure_chain(
    learning_rate: optax.ScalarOrSchedule = LR,
    scaling_factor: Any = None,
    *,
    transform: str,
    transform_args: tuple[Any, ...] = (),
) -> optax.GradientTransformationExtraArgs:
  """``optax.chain(optax.scale_by_adam(), <transform>, optax.scale_by_learning_rate(lr))``.

  A module-level function (rather than a lambda) so that
  ``optax.inject_hyperparams`` can inject ``learning_rate`` and
  ``scaling_factor``; ``transform`` names the transform in
  ``STRUCTURE_TRANSFORMS`` (a string, so inject_hyperparams keeps it static).
  """
  kwargs = {} if scaling_factor is None else {"scaling_factor": scaling_factor}
  return optax.chain(
      optax.scale_by_adam(),
      STRUCTURE_TRANSFORMS[transform](*transform_args, **kwargs),
      optax.scale_by_learning_rate(learning_rate),
  )


def fan_in_formula(record: caadam_jax.LayerRecord, stats: caadam_jax.Statistics, g: Any) -> float:
  """A user formula for ``scale_by_structure``: ``1 / sqrt(fan_in)``; it needs no ``g``."""
  del stats, g
  return record.shapes[0][0] ** -0.5


class Scaler(NamedTuple):
  """A transform built with no arguments (optax transform_test's "scalers").

  ``identity_on_1d``: it leaves updates of 1-D leaves unchanged (no counted layer: every
  structure factor is 1); otherwise (ADAS) the updates need only be finite and nonzero.
  """

  name: str
  constructor: Callable[[], optax.GradientTransformation]
  identity_on_1d: bool


NO_ARGUMENT_SCALERS: list[Scaler] = [
    Scaler("scale_by_connection_minmaxmedian", caadam_jax.scale_by_connection_minmaxmedian, True),
    Scaler("scale_by_depth", caadam_jax.scale_by_depth, True),
    # scale_by_strategy needs its strategy: the only required argument.
    *(
        Scaler(
            f"scale_by_strategy-{strategy}",
            functools.partial(caadam_jax.scale_by_strategy, strategy),
            True,
        )
        for strategy in caadam_jax.STRATEGY_NAMES
    ),
    # scale_by_structure needs its formula (scale_by_strategy's names are formulas).
    Scaler(
        "scale_by_structure-fan_in",
        functools.partial(caadam_jax.scale_by_structure, fan_in_formula),
        True,
    ),
    Scaler("scale_by_adas", caadam_jax.scale_by_adas, False),
    # scale_by_layer_decay needs its decay, and blocks: a tuple of 1-D leaves has no
    # repeated module, so leaf 0 is named block 0 (factor decay) and leaf 1 is the head.
    Scaler(
        "scale_by_layer_decay-blocks",
        functools.partial(caadam_jax.scale_by_layer_decay, 0.75, blocks={"0": 0}),
        False,
    ),
]

# ----------------------------------------------------------------------------
# The CaAdam family: inject_hyperparams values and schedules per strategy.

# The schedules start where every factor is 1 (additive/depth: g = 0;
# multiplicative: g = 1), so the first scheduled step equals Adam's.
_SCHEDULE_ENDS = {"additive": (0.0, 0.9), "multiplicative": (1.0, 5.0), "depth": (0.0, 1.0)}
_INJECTED_SCALING = {"additive": 0.5, "multiplicative": 3.0, "depth": 0.7}
_SCHEDULE_STEPS = 4
_ADAM = functools.partial(optax.adam, learning_rate=LR)


def _scaling_schedule(strategy: str):
  """``Entry.schedule`` for the scaling factor: linear from the identity to ``g``."""
  init, end = _SCHEDULE_ENDS[strategy]
  schedule = optax.linear_schedule(init, end, _SCHEDULE_STEPS)
  return (
      "scaling_factor",
      schedule,
      lambda t: init + (end - init) * min(t, _SCHEDULE_STEPS) / _SCHEDULE_STEPS,
  )


def _caadam_family(
    name: str, factory: Factory, strategy: str, reference: Factory = _ADAM, **inject: float
) -> Entry:
  """An entry whose factors follow ``strategy``: Adam's state, a scheduled scaling factor."""
  return Entry(
      name,
      factory,
      inject_values={
          "learning_rate": 0.05,
          "scaling_factor": _INJECTED_SCALING[strategy],
          **inject,
      },
      schedule=_scaling_schedule(strategy),
      reference=reference,
  )


# Each structure transform after Adam: (transform, its positional arguments, the strategy
# its factors follow, its scaling factor). scale_by_connection_minmaxmedian(
# mode="multiplicative") is scale_by_strategy("multiplicative"): one entry per distinct
# code path keeps the suite's compile time down.
_CHAINS = [
    ("scale_by_connection_minmaxmedian", (), "additive", None),
    ("scale_by_depth", (), "depth", None),
    ("scale_by_strategy", ("multiplicative",), "multiplicative", 2.0),
]

ENTRIES: list[Entry] = [
    # caadam with each strategy, and with decoupled weight decay.
    *(
        _caadam_family(
            f"caadam-{strategy}",
            functools.partial(caadam_jax.caadam, learning_rate=LR, strategy=strategy),
            strategy,
        )
        for strategy in caadam_jax.STRATEGY_NAMES
    ),
    _caadam_family(
        "caadam-additive-weight_decay",
        functools.partial(
            caadam_jax.caadam, learning_rate=LR, weight_decay=1e-4, strategy="additive"
        ),
        "additive",
        reference=functools.partial(optax.adamw, learning_rate=LR, weight_decay=1e-4),
        weight_decay=1e-3,
    ),
    *(
        _caadam_family(
            "-".join(("chain", transform, *args)),
            functools.partial(
                adam_structure_chain,
                transform=transform,
                transform_args=args,
                scaling_factor=scaling_factor,
            ),
            strategy,
        )
        for transform, args, strategy, scaling_factor in _CHAINS
    ),
    # The factors held in the state (factors_in_state): not Adam's state tree, so no
    # reference. The scheduled scaling factor is checked; only the learning rate is
    # injected, since an injected g leaves no concrete factor to hold (another tree:
    # test_factor_state.py checks that case).
    dataclasses.replace(
        _caadam_family(
            "caadam-depth-factors_in_state",
            functools.partial(
                caadam_jax.caadam, learning_rate=LR, strategy="depth", factors_in_state=True
            ),
            "depth",
        ),
        reference=None,
        inject_values={"learning_rate": 0.05},
    ),
    # ADAS: ``caadam_jax.adas(learning_rate=...)``. It is not Adam, so it has no Optax reference,
    # and its per-layer rates adapt over time: looser targets and more steps.
    Entry(
        "adas",
        functools.partial(caadam_jax.adas, learning_rate=LR),
        steps=5000,
        rtol=5e-2,
        atol=5e-2,
        inject_values={"learning_rate": 0.05},
        rosenbrock_lr=None,  # learning_rate is only ADAS's initial step size
        per_layer=False,
        # ADAS is defined for real parameters only; init raises for complex ones.
        supports_complex=False,
    ),
    # Keras-compatible CaAdam. Keras adds epsilon to the uncorrected second moment, so
    # optax.adam is no exact reference.
    Entry(
        "keras_caadam",
        functools.partial(caadam_jax.published.keras_caadam, learning_rate=LR),
        # caadam 0.1.1 looks kernels up by their short name: every kernel gets
        # the last kernel's connection count, so all kernels share one factor.
        per_layer=False,
    ),
]
