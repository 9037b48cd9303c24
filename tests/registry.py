"""Registry of every optimizer of caadam_jax that the common checks run on.

``REGISTRY`` is a list of ``(name, factory)`` pairs. A factory is called with no
arguments to build the optimizer, and with keyword overrides to change
hyperparameters (``factory(learning_rate=0.01)``). Factories should be
``functools.partial`` objects of a constructor with keyword arguments, so that
``optax.inject_hyperparams(factory.func)(**factory.keywords)`` rebuilds the same
optimizer with injected hyperparameters; the inject_hyperparams checks are
skipped for factories that are not.

``SETTINGS`` maps a name to its :class:`Settings` (per-entry targets, steps,
tolerances, reference optimizer, ...); names without an entry get
``Settings()``.

Other test modules extend the registry with :func:`register`::

    from registry import register, Settings  # or: from tests.registry import ...
    register("my_opt", functools.partial(my_opt, learning_rate=0.1), Settings(...))

``entries()`` returns the current registry as :class:`Entry` tuples, which the
parametrized tests in ``test_common.py`` iterate over.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import optax

import caadam_jax

Factory = Callable[..., optax.GradientTransformation]

# Learning rate used by the default entries (the optimization checks were tuned for it).
LR = 0.1


@dataclasses.dataclass(frozen=True)
class Settings:
  """Per-entry settings of the common checks.

  Attributes:
    steps: optimization steps on the parabola targets.
    rosenbrock_steps: optimization steps on the Rosenbrock targets.
    lr_name: the factory's learning-rate keyword.
    rosenbrock_lr: the learning rate on the Rosenbrock targets (Adam at a
      constant rate oscillates in the valley when a structure factor of ~2-5
      multiplies it); None keeps the factory's.
    rtol: relative tolerance of the optimization checks (optax uses 3e-2).
    atol: absolute tolerance of the optimization checks (optax uses 3e-2).
    targets: names of the optimization targets to run (see
      ``common_checks.TARGETS``); the others are skipped.
    supports_complex: whether complex parameters are supported.
    inject_values: hyperparameters (factory keyword -> value) the
      inject_hyperparams equality check sets; they must be numeric keywords of
      the factory.
    inject_static_args: ``static_args`` for ``optax.inject_hyperparams``.
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
    step_kwargs: extra keyword arguments every ``update`` call gets (e.g.
      ``{'value': ...}`` is added automatically when ``needs_value``).
    needs_value: whether ``update`` needs the loss as ``value=``.
    known_failures: check name (a ``test_common`` test function name, optionally
      ``name[qualifier]`` as documented there) -> reason; those tests are marked
      xfail (not strict), so they report XPASS once fixed.
  """

  steps: int = 3000
  rosenbrock_steps: int = 30000
  lr_name: str = "learning_rate"
  rosenbrock_lr: float | None = 0.02
  rtol: float = 3e-2
  atol: float = 3e-2
  targets: tuple[str, ...] = (
      "parabola",
      "rosenbrock",
      "layered_parabola",
      "layered_rosenbrock",
  )
  supports_complex: bool = True
  inject_values: Mapping[str, Any] = dataclasses.field(
      default_factory=lambda: {"learning_rate": 0.05}
  )
  inject_static_args: tuple[str, ...] = ()
  schedule: tuple[str, Callable[[Any], Any], Callable[[int], float]] | None = None
  reference: Factory | None = None
  per_layer: bool = True
  needs_value: bool = False
  known_failures: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Entry(NamedTuple):
  """One registry entry: its name, factory and settings."""

  name: str
  factory: Factory
  settings: Settings


REGISTRY: list[tuple[str, Factory]] = []
SETTINGS: dict[str, Settings] = {}


def register(name: str, factory: Factory, settings: Settings | None = None) -> None:
  """Adds ``(name, factory)`` to the registry, with optional settings."""
  if any(n == name for n, _ in REGISTRY):
    raise ValueError(f"{name!r} is already registered.")
  REGISTRY.append((name, factory))
  if settings is not None:
    SETTINGS[name] = settings


def entries() -> list[Entry]:
  """The registry with settings, in registration order."""
  return [Entry(name, factory, SETTINGS.get(name, Settings())) for name, factory in REGISTRY]


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
    mode: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  """``optax.chain(optax.scale_by_adam(), <transform>, optax.scale_by_learning_rate(lr))``.

  A module-level function (rather than a lambda) so that
  ``optax.inject_hyperparams`` can inject ``learning_rate`` and
  ``scaling_factor``; ``transform`` names the transform in
  ``STRUCTURE_TRANSFORMS`` (a string, so inject_hyperparams keeps it static).
  """
  kwargs: dict[str, Any] = {}
  if scaling_factor is not None:
    kwargs["scaling_factor"] = scaling_factor
  if mode is not None:
    kwargs["mode"] = mode
  return optax.chain(
      optax.scale_by_adam(),
      STRUCTURE_TRANSFORMS[transform](*transform_args, **kwargs),
      optax.scale_by_learning_rate(learning_rate),
  )


def fan_in_formula(record: caadam_jax.LayerRecord, stats: caadam_jax.Statistics, g: Any) -> float:
  """A user formula for ``scale_by_structure``: ``1 / sqrt(fan_in)``; it needs no ``g``."""
  del stats, g
  return record.shapes[0][0] ** -0.5


# Structure transforms constructed with no arguments (optax transform_test's
# "scalers"): name -> zero-argument constructor.
NO_ARGUMENT_SCALERS: list[tuple[str, Callable[[], optax.GradientTransformation]]] = [
    ("scale_by_connection_minmaxmedian", caadam_jax.scale_by_connection_minmaxmedian),
    ("scale_by_depth", caadam_jax.scale_by_depth),
    # scale_by_strategy needs its strategy: the only required argument.
    ("scale_by_strategy-additive", functools.partial(caadam_jax.scale_by_strategy, "additive")),
    (
        "scale_by_strategy-multiplicative",
        functools.partial(caadam_jax.scale_by_strategy, "multiplicative"),
    ),
    ("scale_by_strategy-depth", functools.partial(caadam_jax.scale_by_strategy, "depth")),
    # scale_by_structure needs its formula (scale_by_strategy's names are formulas).
    ("scale_by_structure-fan_in", functools.partial(caadam_jax.scale_by_structure, fan_in_formula)),
]
# The structure scalers above leave updates of 1-D leaves unchanged (no counted
# layer: every factor is 1); others (ADAS) only need finite updates of the right shape.
IDENTITY_ON_1D = {name for name, _ in NO_ARGUMENT_SCALERS}


def _linear(init: float, end: float, steps: int = 4):
  return optax.linear_schedule(init, end, steps)


def _linear_value(init: float, end: float, steps: int = 4):
  return lambda t: init + (end - init) * min(t, steps) / steps


# The schedules start where every factor is 1 (additive/depth: g = 0;
# multiplicative: g = 1), so the first scheduled step equals Adam's.
_SCHEDULES = {
    "additive": (0.0, 0.9),
    "multiplicative": (1.0, 5.0),
    "depth": (0.0, 1.0),
}


def _schedule(strategy: str):
  init, end = _SCHEDULES[strategy]
  return ("scaling_factor", _linear(init, end), _linear_value(init, end))


_ADAM = functools.partial(optax.adam, learning_rate=LR)

# ----------------------------------------------------------------------------
# caadam with each strategy, and with decoupled weight decay.

_INJECT_SCALING = {"additive": 0.5, "multiplicative": 3.0, "depth": 0.7}

for _strategy in typing.get_args(caadam_jax.StrategyName):
  register(
      f"caadam-{_strategy}",
      functools.partial(caadam_jax.caadam, learning_rate=LR, strategy=_strategy),
      Settings(
          inject_values={"learning_rate": 0.05, "scaling_factor": _INJECT_SCALING[_strategy]},
          schedule=_schedule(_strategy),
          reference=_ADAM,
      ),
  )

register(
    "caadam-additive-weight_decay",
    functools.partial(caadam_jax.caadam, learning_rate=LR, weight_decay=1e-4),
    Settings(
        inject_values={"learning_rate": 0.05, "scaling_factor": 0.5, "weight_decay": 1e-3},
        schedule=_schedule("additive"),
        reference=functools.partial(optax.adamw, learning_rate=LR, weight_decay=1e-4),
    ),
)

# ----------------------------------------------------------------------------
# Each structure transform after Adam.

register(
    "chain-scale_by_connection_minmaxmedian",
    functools.partial(adam_structure_chain, transform="scale_by_connection_minmaxmedian"),
    Settings(
        inject_values={"learning_rate": 0.05, "scaling_factor": 0.5},
        schedule=_schedule("additive"),
        reference=_ADAM,
    ),
)
# (scale_by_connection_minmaxmedian(mode="multiplicative") is scale_by_strategy(
# "multiplicative"), registered below; one entry per distinct code path keeps the
# suite's compile time down.)
register(
    "chain-scale_by_depth",
    functools.partial(adam_structure_chain, transform="scale_by_depth"),
    Settings(
        inject_values={"learning_rate": 0.05, "scaling_factor": 0.7},
        schedule=_schedule("depth"),
        reference=_ADAM,
    ),
)
register(
    "chain-scale_by_strategy-multiplicative",
    functools.partial(
        adam_structure_chain,
        transform="scale_by_strategy",
        transform_args=("multiplicative",),
        scaling_factor=2.0,
    ),
    Settings(
        inject_values={"learning_rate": 0.05, "scaling_factor": 3.0},
        schedule=_schedule("multiplicative"),
        reference=_ADAM,
    ),
)

# ----------------------------------------------------------------------------
# ADAS: ``caadam_jax.adas(lr=...)`` (its learning rate argument is ``lr``, not
# ``learning_rate``). It is not Adam, so it has no Optax reference, and its
# per-layer rates adapt over time: looser targets and more steps.
register(
    "adas",
    functools.partial(caadam_jax.adas, lr=LR),
    Settings(
        steps=5000,
        rosenbrock_steps=30000,
        rtol=5e-2,
        atol=5e-2,
        lr_name="lr",
        rosenbrock_lr=None,  # lr is only ADAS's initial step size
        inject_values={"lr": 0.05},
        reference=None,
        per_layer=False,
        # ADAS is defined for real parameters only; init raises for complex ones.
        supports_complex=False,
    ),
)

# Keras-compatible CaAdam: ``caadam_jax.keras_caadam(learning_rate=...)``. Keras
# adds epsilon to the uncorrected second moment, so optax.adam is no exact reference.
register(
    "keras_caadam",
    functools.partial(caadam_jax.keras_caadam, learning_rate=LR),
    Settings(
        inject_values={"learning_rate": 0.05},
        reference=None,
        # caadam 0.1.1 looks kernels up by their short name: every kernel gets
        # the last kernel's connection count, so all kernels share one factor.
        per_layer=False,
    ),
)

NO_ARGUMENT_SCALERS.append(("scale_by_adas", caadam_jax.scale_by_adas))
