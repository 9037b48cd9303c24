"""Structure inference and per-layer factors, checked against hand-computed values.

Expected factors are computed in this file from the formulas of docs/method.md ("The factors")
(``reference_factors``) or written out as literal numbers; the library is only
the thing under test.
"""

import math
from typing import Any

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from caadam_test_helpers import mlp_params
from flax import linen as nn

import caadam_jax


def reference_factors(connections, strategy, g):
  """The paper's formulas written out independently, layers in forward order."""
  c = [float(x) for x in connections]
  c_min, c_max = min(c), max(c)
  ordered = sorted(c)
  mid = len(ordered) // 2
  c_med = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
  depth_count = len(c)
  out = []
  for depth, ci in enumerate(c):
    if strategy == "depth":
      out.append((1 + g) ** ((depth_count - (1 + depth)) / depth_count))
      continue
    if c_min == c_max:
      out.append(1.0)
      continue
    if ci <= c_med:
      n = 0.0 if c_med == c_min else (c_med - ci) / (c_med - c_min)
      out.append(1 + g * n if strategy == "additive" else g**n)
    else:
      n = (ci - c_med) / (c_max - c_med)
      out.append(1 - g * n if strategy == "additive" else g**n)
  return out


def factors_by_str(params, strategy, g=None, structure=None):
  structure = structure or caadam_jax.infer_structure(params)
  return {"/".join(map(str, p)): f for p, f in structure.factors(strategy, g).items()}


def test_small_mlp_literal_values():
  # widths 3-4-5-6-2: connections 12, 20, 30, 12 -> min 12, median 16, max 30.
  params = mlp_params([3, 4, 5, 6, 2])
  additive = factors_by_str(params, "additive")
  assert additive["Dense_0/kernel"] == pytest.approx(1.95)
  assert additive["Dense_0/bias"] == pytest.approx(1.95)
  assert additive["Dense_1/kernel"] == pytest.approx(1 - 0.95 * 4 / 14)
  assert additive["Dense_2/kernel"] == pytest.approx(0.05)
  assert additive["Dense_3/bias"] == pytest.approx(1.95)
  multiplicative = factors_by_str(params, "multiplicative")
  assert multiplicative["Dense_0/kernel"] == pytest.approx(5.0)
  assert multiplicative["Dense_1/kernel"] == pytest.approx(5.0 ** (2 / 7))
  assert multiplicative["Dense_2/bias"] == pytest.approx(5.0)  # large layers are boosted too
  depth = factors_by_str(params, "depth")
  assert [depth[f"Dense_{i}/kernel"] for i in range(4)] == pytest.approx(
      [2**0.75, 2**0.5, 2**0.25, 1.0]
  )
  structure = caadam_jax.infer_structure(params)
  assert structure.statistics == caadam_jax.Statistics(12.0, 16.0, 30.0, 4)


def test_median_equal_to_min_is_finite():
  # connections 8, 32, 8: c_med == c_min, the lower branch would be 0/0.
  params = mlp_params([2, 4, 8, 1])
  additive = factors_by_str(params, "additive")
  assert additive == pytest.approx(
      {
          "Dense_0/kernel": 1.0,
          "Dense_0/bias": 1.0,
          "Dense_1/kernel": 0.05,
          "Dense_1/bias": 0.05,
          "Dense_2/kernel": 1.0,
          "Dense_2/bias": 1.0,
      }
  )
  assert all(math.isfinite(f) for f in factors_by_str(params, "multiplicative").values())


def test_equal_layers_give_one():
  params = mlp_params([4, 4, 4, 4])
  assert set(factors_by_str(params, "additive").values()) == {1.0}
  assert set(factors_by_str(params, "multiplicative", 3.0).values()) == {1.0}


@pytest.mark.parametrize(
    "strategy,g",
    [
        ("additive", 0.95),
        ("additive", 0.5),
        ("multiplicative", 5.0),
        ("multiplicative", 0.5),
        ("depth", 1.0),
        ("depth", 3.0),
    ],
)
def test_twelve_layer_mlp_uses_natural_order(strategy, g):
  widths = [7, 64, 16, 48, 8, 32, 96, 24, 40, 12, 80, 20, 3]
  params = mlp_params(widths)
  connections = [a * b for a, b in zip(widths[:-1], widths[1:], strict=False)]
  expected = reference_factors(connections, strategy, g)
  got = factors_by_str(params, strategy, g)
  for i in range(12):
    assert got[f"Dense_{i}/kernel"] == pytest.approx(expected[i], rel=1e-12)
    assert got[f"Dense_{i}/bias"] == pytest.approx(expected[i], rel=1e-12)
  # Sorted (jax) order would put Dense_10 and Dense_11 at depths 2 and 3.
  structure = caadam_jax.infer_structure(params)
  assert structure.leaves[("Dense_10", "kernel")].depth == 10
  assert structure.leaves[("Dense_2", "bias")].depth == 2
  if strategy == "depth":
    sorted_names = sorted(f"Dense_{i}" for i in range(12))
    wrong = reference_factors(connections, "depth", g)[sorted_names.index("Dense_10")]
    assert got["Dense_10/kernel"] != pytest.approx(wrong)


def test_cnn_with_batchnorm():
  class CNN(nn.Module):

    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(8, (3, 3))(x)
      x = nn.BatchNorm(use_running_average=not train)(x)
      x = nn.relu(nn.Conv(16, (3, 3))(x))
      x = x.reshape((x.shape[0], -1))
      return nn.Dense(10)(x)

  # Shapes are all this test reads: ShapeDtypeStruct leaves, nothing compiled or allocated.
  variables = jax.eval_shape(CNN().init, jax.random.key(0), jnp.ones((1, 8, 8, 1)))
  params = variables["params"]
  assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(params))
  # Conv_0: 3*3*1*8 = 72; Conv_1: 3*3*8*16 = 1152; Dense_0: 8*8*16*10 = 10240.
  connections = [72, 1152, 10240]
  structure = caadam_jax.infer_structure(params)
  assert [r.connections for r in structure.layers.values()] == connections
  assert list(structure.layers) == [("Conv_0",), ("Conv_1",), ("Dense_0",)]
  for strategy, g in (("additive", 0.95), ("multiplicative", 5.0), ("depth", 1.0)):
    expected = dict(
        zip(
            ["Conv_0", "Conv_1", "Dense_0"],
            reference_factors(connections, strategy, g),
            strict=False,
        )
    )
    got = factors_by_str(params, strategy, g)
    for path, factor in got.items():
      layer = path.split("/")[0]
      if layer == "BatchNorm_0":
        assert factor == 1.0  # not counted: no weight tensor
      else:
        assert factor == pytest.approx(expected[layer], rel=1e-12)
  assert structure.leaves[("BatchNorm_0", "scale")].connections is None


def test_conv_kernel_counts_all_dims_and_scalar_root():
  structure = caadam_jax.infer_structure(jnp.ones((3, 3, 2, 4)))
  assert structure.leaves[()].connections == 72
  assert factors_by_str(jnp.ones((5, 5)), "additive") == {"": 1.0}
  empty = caadam_jax.infer_structure({})
  assert empty.statistics is None and not empty.leaves


def test_shape_dtype_struct_leaves():
  params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), mlp_params([3, 4, 5, 6, 2])
  )
  assert factors_by_str(params, "additive") == pytest.approx(
      factors_by_str(mlp_params([3, 4, 5, 6, 2]), "additive")
  )


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    connections=st.lists(st.integers(1, 10_000), min_size=1, max_size=12),
    g_add=st.floats(0.0, 0.999),
    g_mul=st.floats(1.0, 10.0),
    g_depth=st.floats(0.0, 5.0),
)
def test_factor_properties(connections, g_add, g_mul, g_depth):
  # Structure reads shapes only: ShapeDtypeStruct leaves, no arrays allocated per example
  # (Optax's Params type, in infer_structure's signature, admits arrays only).
  params = {
      f"layer_{i}": {"kernel": jax.ShapeDtypeStruct((c, 1), jnp.float32)}
      for i, c in enumerate(connections)
  }
  structure = caadam_jax.infer_structure(params)  # pyright: ignore[reportArgumentType]
  order = [f"layer_{i}/kernel" for i in range(len(connections))]
  additive = factors_by_str(params, "additive", g_add, structure)
  multiplicative = factors_by_str(params, "multiplicative", g_mul, structure)
  depth = factors_by_str(params, "depth", g_depth, structure)
  for name, _c in zip(order, connections, strict=False):
    # Additive stays within [1 - g, 1 + g] and is never negative for g < 1.
    assert 1 - g_add - 1e-12 <= additive[name] <= 1 + g_add + 1e-12
    assert multiplicative[name] >= 1 - 1e-12  # g >= 1: never shrinks a step
    assert 1 - 1e-12 <= depth[name] <= 1 + g_depth + 1e-12
  # Additive is non-increasing in the connection count.
  pairs = sorted(zip(connections, (additive[n] for n in order), strict=False))
  assert all(a[1] >= b[1] - 1e-12 for a, b in zip(pairs, pairs[1:], strict=False))
  # Depth is non-increasing with depth and the last layer gets exactly 1.
  depth_values = [depth[n] for n in order]
  assert depth_values[-1] == 1.0
  assert all(a >= b for a, b in zip(depth_values, depth_values[1:], strict=False))
  assert np.allclose(
      [additive[n] for n in order], reference_factors(connections, "additive", g_add)
  )
  assert np.allclose(
      [multiplicative[n] for n in order], reference_factors(connections, "multiplicative", g_mul)
  )
  assert np.allclose(depth_values, reference_factors(connections, "depth", g_depth))


# A Mapping's key type must match exactly: the paths are typed as from_layers takes them.
Path = tuple[str | int, ...]


def test_from_layers_explicit_order():
  leaves: dict[Path, tuple[Any, ...]] = {
      ("enc", "kernel"): (("enc",), (4, 8)),
      ("head", "kernel"): (("head",), (8, 2)),
  }
  structure = caadam_jax.Structure.from_layers(leaves, [(("head",), 16), (("enc",), 32)])
  assert structure.leaves[("head", "kernel")].depth == 0
  assert structure.leaves[("enc", "kernel")].depth == 1
  with pytest.raises(ValueError, match="more than once"):
    caadam_jax.Structure.from_layers(leaves, [(("enc",), 1), (("enc",), 2)])


def test_from_layers_takes_leaf_infos_and_layer_records():
  """The record forms build the same structure as the tuple forms, stacks included."""
  LeafInfo, LayerRecord = caadam_jax.LeafInfo, caadam_jax.LayerRecord
  blocks = ("blocks",)
  leaves: dict[Path, caadam_jax.LeafInfo] = {
      ("enc", "kernel"): LeafInfo(("enc",), (4, 8), None, None, weight=True),
      ("enc", "bias"): LeafInfo(("enc",), (8,), None, None),
      ("blocks", "kernel"): LeafInfo(blocks, (2, 8, 8), None, None, stack_axis=0, weight=True),
  }
  records = {
      ("enc",): LayerRecord(32, 0),
      ("blocks", "[0]"): LayerRecord(64, 1),
      ("blocks", "[1]"): LayerRecord(64, 2),
  }
  by_records = caadam_jax.Structure.from_layers(leaves, records)
  by_tuples = caadam_jax.Structure.from_layers(
      {
          ("enc", "kernel"): (("enc",), (4, 8)),
          ("enc", "bias"): (("enc",), (8,)),
          ("blocks", "kernel"): (blocks, (2, 8, 8), 0),
      },
      [(("enc",), 32, 0), (("blocks", "[0]"), 64, 1), (("blocks", "[1]"), 64, 2)],
  )
  assert dict(by_records.leaves) == dict(by_tuples.leaves)
  assert by_records.statistics == by_tuples.statistics == (32.0, 64.0, 64.0, 3)
  assert by_records.leaves[("blocks", "kernel")].connections == (64, 64)
  assert by_records.layers[("blocks", "[1]")] == LayerRecord(64, 2, ((8, 8),))
  # Depth 2 of D = 3: (1 + g) ** ((3 - 3) / 3) = 1; the enc layer: 2 ** (2 / 3).
  factors = by_records.factors("depth", 1.0)
  np.testing.assert_allclose(
      np.ravel(factors[("blocks", "kernel")]), [2 ** (1 / 3), 1.0], rtol=1e-12
  )
  assert factors[("enc", "bias")] == pytest.approx(2 ** (2 / 3))
  from_records = caadam_jax.Structure.from_records(
      {"enc": {"kernel": jnp.ones((4, 8)), "bias": jnp.ones(8)}}, {"enc": LayerRecord(32, 0)}
  )
  assert from_records.layers == {("enc",): LayerRecord(32, 0, ((4, 8),))}


def test_structure_mismatch_errors_name_paths():
  params = mlp_params([3, 4, 2])
  structure = caadam_jax.infer_structure(params)
  tx = caadam_jax.caadam(structure=structure, strategy="additive")
  with pytest.raises(ValueError, match="not in the structure: Dense_9/kernel"):
    tx.init({**params, "Dense_9": {"kernel": jnp.ones((2, 2))}})
  with pytest.raises(ValueError, match="not in the tree: Dense_1/bias"):
    tx.init({"Dense_0": params["Dense_0"], "Dense_1": {"kernel": params["Dense_1"]["kernel"]}})
  with pytest.raises(ValueError, match="shapes differ"):
    tx.init({**params, "Dense_1": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}})
  tx.init(params)  # the matching tree is accepted
