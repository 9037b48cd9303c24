"""Path normalization and natural ordering."""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import nnx

from caadam_jax import _paths


def test_normalize_drops_box_value_and_keeps_int_keys():
  key_path = (
      jax.tree_util.DictKey("layers"),
      jax.tree_util.DictKey(3),
      jax.tree_util.DictKey("kernel"),
      jax.tree_util.GetAttrKey("value"),
  )
  assert _paths.normalize_path(key_path) == ("layers", 3, "kernel")


def test_normalize_keeps_a_module_named_value():
  # Attention's value projection is a dict key in the middle of the path, not a box.
  key_path = (jax.tree_util.DictKey("value"), jax.tree_util.DictKey("kernel"))
  assert _paths.normalize_path(key_path) == ("value", "kernel")


def test_sequence_keys_become_ints():
  leaves, _ = _paths.leaves_with_paths([jnp.zeros(2), (jnp.zeros(3),)])
  assert [p for p, _ in leaves] == [(0,), (1, 0)]


def test_natural_order_compares_numbers_as_numbers():
  layers = [("Dense_10",), ("Dense_2",), ("Dense_1",), ("layers", 10), ("layers", 2)]
  assert sorted(layers, key=_paths.natural_key) == [
      ("Dense_1",),
      ("Dense_2",),
      ("Dense_10",),
      ("layers", 2),
      ("layers", 10),
  ]
  # jax's own dict order is lexicographic: the trap natural order avoids.
  flat = jax.tree_util.tree_flatten_with_path({f"Dense_{i}": 0 for i in (1, 2, 10)})[0]
  assert [p[0].key for p, _ in flat] == ["Dense_1", "Dense_10", "Dense_2"]


def test_string_and_int_keys_order_without_type_errors():
  layers = [("a", 1), ("a", "b"), ("a", 0)]
  assert sorted(layers, key=_paths.natural_key) == [("a", 0), ("a", 1), ("a", "b")]


def test_parse_path_roundtrip():
  assert _paths.parse_path("layers/2/kernel") == ("layers", 2, "kernel")
  assert _paths.parse_path("<root>") == ()
  assert _paths.path_to_str(("layers", 2, "kernel")) == "layers/2/kernel"
  assert _paths.path_to_str(()) == "<root>"


def test_masked_nodes_are_reported_separately():
  tree = {"a": jnp.zeros(2), "b": optax.MaskedNode()}
  leaves, masked = _paths.leaves_with_paths(tree)
  assert [p for p, _ in leaves] == [("a",)]
  assert masked == [("b",)]


def test_linen_boxed_and_plain_params_normalize_alike():
  class Boxed(nn.Module):

    @nn.compact
    def __call__(self, x):
      init = nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
      return nn.Dense(3, kernel_init=init)(x)

  boxed = Boxed().init(jax.random.key(0), jnp.ones((1, 2)))["params"]
  plain = nn.Dense(3).init(jax.random.key(0), jnp.ones((1, 2)))["params"]
  boxed_paths = sorted(p for p, _ in _paths.leaves_with_paths(boxed)[0])
  plain_paths = sorted(p for p, _ in _paths.leaves_with_paths(plain)[0])
  assert boxed_paths == [("Dense_0", "bias"), ("Dense_0", "kernel")]
  assert plain_paths == [("bias",), ("kernel",)]


def test_nnx_state_paths_with_and_without_value_agree():
  class Model(nnx.Module):

    def __init__(self, rngs):
      self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

  model = Model(nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  with_value = [p for p, _ in _paths.leaves_with_paths(state)[0]]
  pure = [p for p, _ in _paths.leaves_with_paths(nnx.to_pure_dict(state))[0]]
  assert with_value == pure
  assert ("layers", 1, "kernel") in with_value
