"""Dtype rules shared by the transforms, written to hold under strict dtype promotion."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp


def at_least_float32(dtype: Any) -> jnp.dtype:
  """The dtype of ``promote_types(dtype, float32)``, without implicit promotion.

  16-bit floats (``bfloat16``, ``float16``) and non-floating dtypes give float32;
  float32 and float64 stay as they are. ``jnp.promote_types`` itself raises for
  ``bfloat16`` under ``jax_numpy_dtype_promotion="strict"``.

  Args:
    dtype: any NumPy or JAX dtype (or something ``jnp.dtype`` accepts).

  Returns:
    The dtype.
  """
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 32:
    return dtype
  return jnp.dtype(jnp.float32)
