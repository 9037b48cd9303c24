"""Helpers on single parameter leaves, shared by the structure, transforms and published mode."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from caadam_jax import _formulas


def shape_of(leaf: Any) -> tuple[int, ...]:
  """A leaf's shape as ints: arrays, ``jax.ShapeDtypeStruct`` and Python scalars."""
  shape = getattr(leaf, "shape", None)
  return tuple(int(d) for d in (np.shape(leaf) if shape is None else shape))


def scale_leaf(update: jax.Array, factor: _formulas.Factor) -> jax.Array:
  """``update * factor``; a Python 1.0 leaves the update untouched (no multiply traced)."""
  if isinstance(factor, float) and factor == 1.0:
    return update
  # Cast to the update's dtype: a float32 factor must not promote bf16 updates.
  return update * jnp.asarray(factor, dtype=update.dtype)
