"""Renamed keywords and moved names: the old ones keep working for one release, with a warning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[_F], _F]:
  """Decorates a public function so that old keyword names map to the new ones.

  An old keyword emits a ``DeprecationWarning`` naming the new keyword and is passed
  on under the new name; the old and the new name together raise a ``TypeError``.
  The decorated function keeps its (new) signature for ``inspect.signature``, so
  ``optax.inject_hyperparams`` and Sphinx see only the new names.

  Args:
    **renames: old keyword -> new keyword.

  Returns:
    The decorator.

  Examples:
    >>> import warnings
    >>> from caadam_jax._deprecation import renamed_keywords
    >>> @renamed_keywords(lr="learning_rate")
    ... def f(learning_rate=1.0):
    ...   return learning_rate
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   f(lr=2.0), str(caught[0].message)
    (2.0, "caadam_jax.f: the keyword 'lr' is deprecated; use 'learning_rate'.")
  """

  def decorate(fn: _F) -> _F:
    name = f"caadam_jax.{fn.__name__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
      for old, new in renames.items():
        if old not in kwargs:
          continue
        if new in kwargs:
          raise TypeError(f"{name} got both {old!r} (deprecated) and {new!r}: pass only {new!r}.")
        warnings.warn(
            f"{name}: the keyword {old!r} is deprecated; use {new!r}.",
            DeprecationWarning,
            stacklevel=2,
        )
        kwargs[new] = kwargs.pop(old)
      return fn(*args, **kwargs)

    return cast(_F, wrapper)

  return decorate


def moved(old: str, new: str, namespace: Any) -> Any:
  """Warns that ``old`` moved to ``new`` and returns ``new``'s object.

  For a module ``__getattr__`` that keeps a moved public name working for one release.

  Args:
    old: the former full name (``'caadam_jax.keras_caadam'``).
    new: the new full name (``'caadam_jax.published.keras_caadam'``).
    namespace: the module that holds ``new`` (its last component is looked up there).

  Returns:
    The object now named ``new``.

  Examples:
    >>> import warnings, caadam_jax
    >>> from caadam_jax._deprecation import moved
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   fn = moved("old.path_to_str", "caadam_jax.path_to_str", caadam_jax)
    >>> fn is caadam_jax.path_to_str, str(caught[0].message)
    (True, 'old.path_to_str is deprecated; use caadam_jax.path_to_str.')
  """
  # stacklevel 3: the user's line, above the module __getattr__ that calls this.
  warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning, stacklevel=3)
  return getattr(namespace, new.rsplit(".", 1)[-1])
