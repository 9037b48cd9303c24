"""Layer-wise learning-rate decay against the timm/BEiT rule, written out by hand per model.

Every expected factor is ``decay ** (L + 1 - id)`` with the id read off a table of path
prefixes typed here from the rule (stem 0, block i -> i + 1, after the last block
L + 1), never from the implementation.
"""

from __future__ import annotations

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import caadam_jax
from benchmarks import model_zoo as zoo
from caadam_jax import _paths

DECAY = 0.75

# ---------------------------------------------------------------------------- oracles


def expected_factors(params, table, num_blocks, decay=DECAY, stacked=None):
  """Leaf path -> decay ** (L + 1 - id) with the id of the longest matching prefix in ``table``.

  ``stacked``: prefix -> axis of stacks whose slice i is block ``i`` (id ``i + 1``).
  """
  out = {}
  for path, leaf in _paths.leaves_with_paths(params)[0]:
    text = _paths.path_to_str(path)
    stack = next((a for p, a in (stacked or {}).items() if text.startswith(p + "/")), None)
    if stack is not None:
      n = leaf.shape[stack]
      ids = np.arange(1, n + 1, dtype=np.float64)
      shape = [1] * leaf.ndim
      shape[stack] = n
      out[path] = (decay ** (num_blocks + 1 - ids)).reshape(shape)
      continue
    matches = [p for p in table if text == p or text.startswith(p + "/")]
    assert matches, f"test table misses {text}"
    block_id = table[max(matches, key=len)]
    out[path] = decay ** (num_blocks + 1 - block_id)
  return out


def ids_table(num_blocks, stem, block_prefix, head):
  table = dict.fromkeys(stem, 0)
  table.update({block_prefix(i): i + 1 for i in range(num_blocks)})
  table.update(dict.fromkeys(head, num_blocks + 1))
  return table


def adam_then_decay(params, grads, decay=DECAY, **kwargs):
  """One jitted step of chain(scale_by_adam, scale_by_layer_decay) and of plain Adam."""
  adam = optax.scale_by_adam()
  tx = optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_layer_decay(decay, **kwargs))
  ours, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  ref, _ = jax.jit(adam.update)(grads, adam.init(params), params)
  return ours, ref


def assert_step_is_adam_times(params, expected, **kwargs):
  grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)
  ours, ref = adam_then_decay(params, grads, **kwargs)
  want = {p: r * np.asarray(expected[p], np.float32) for p, r in _paths.leaves_with_paths(ref)[0]}
  got = dict(_paths.leaves_with_paths(ours)[0])
  assert set(got) == set(want)
  for path in want:
    np.testing.assert_allclose(got[path], want[path], rtol=1e-6, atol=1e-7, err_msg=str(path))


def factors_of(structure_or_params, decay=DECAY, **kwargs):
  rows = caadam_jax.describe_layer_decay(structure_or_params, decay, show=False, **kwargs)
  return {_paths.parse_path(r.leaf): r.factor for r in rows}


def assert_factors(got, expected):
  # Compared by path string: a parsed "0" key is the int 0, as describe_layer_decay prints it.
  got = {_paths.path_to_str(p): v for p, v in got.items()}
  expected = {_paths.path_to_str(p): v for p, v in expected.items()}
  assert set(got) == set(expected)
  for path, want in expected.items():
    np.testing.assert_allclose(
        np.asarray(got[path], np.float64).ravel(),
        np.asarray(want, np.float64).ravel(),
        rtol=1e-12,
        err_msg=path,
    )


# ---------------------------------------------------------------------------- models


class ScannedEncoderBlock(nn.Module):

  @nn.compact
  def __call__(self, x, _):
    return zoo.Encoder1DBlock(name="block")(x), None


class LinenViT(nn.Module):
  """vision_transformer's layout.

  embedding, cls, Transformer/{posembed_input, encoderblock_i | encoderblock (nn.scan),
  encoder_norm}, head.
  """

  num_layers: int = 3
  scan: bool = False

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(8, (4, 4), strides=(4, 4), padding="VALID", name="embedding")(images)
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
    x = jnp.concatenate([jnp.tile(cls, [n, 1, 1]), x], axis=1)
    x = Transformer(self.num_layers, self.scan, name="Transformer")(x)
    return nn.Dense(10, name="head")(x[:, 0])


class Transformer(nn.Module):
  num_layers: int
  scan: bool

  @nn.compact
  def __call__(self, x):
    x = zoo.AddPositionEmbs(name="posembed_input")(x)
    if self.scan:
      blocks = nn.scan(
          ScannedEncoderBlock,
          variable_axes={"params": 0},
          split_rngs={"params": True},
          length=self.num_layers,
      )
      x, _ = blocks(name="encoderblock")(x, None)
    else:
      for i in range(self.num_layers):
        x = zoo.Encoder1DBlock(name=f"encoderblock_{i}")(x)
    return nn.LayerNorm(name="encoder_norm")(x)


VIT_STEM = ("embedding", "cls", "Transformer/posembed_input")
VIT_HEAD = ("Transformer/encoder_norm", "head")


class Seq2Seq(nn.Module):
  """An encoder-decoder: encoder/layers_i, decoder/layers_i (cross-attention), head."""

  n_enc: int = 2
  n_dec: int = 3
  d: int = 8

  @nn.compact
  def __call__(self, src, tgt):
    enc = nn.Embed(16, self.d, name="src_embed")(src)
    enc = Stack(self.n_enc, False, name="encoder")(enc, None)
    dec = nn.Embed(16, self.d, name="tgt_embed")(tgt)
    dec = Stack(self.n_dec, True, name="decoder")(dec, enc)
    return nn.Dense(16, name="logits")(nn.LayerNorm(name="final_norm")(dec))


class Stack(nn.Module):
  n: int
  cross: bool

  @nn.compact
  def __call__(self, x, memory):
    for i in range(self.n):
      x = SeqBlock(self.cross, name=f"layers_{i}")(x, memory)
    return x


class SeqBlock(nn.Module):
  cross: bool

  @nn.compact
  def __call__(self, x, memory):
    x = x + nn.SelfAttention(2, name="self_attn")(nn.LayerNorm()(x))
    if self.cross:
      x = x + nn.MultiHeadDotProductAttention(2, name="cross_attn")(nn.LayerNorm()(x), memory)
    return x + nn.Dense(x.shape[-1], name="mlp")(nn.LayerNorm()(x))


class ResNet4(nn.Module):
  """Flax imagenet ResNet layout, two stages of two blocks (4 and 8 filters)."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), use_bias=False, name="conv_init")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn_init")(x))
    for i, (filters, strides) in enumerate([(4, 1), (4, 1), (8, 2), (8, 1)]):
      x = zoo.ResNetBlock(filters, strides, name=f"ResNetBlock_{i}")(x, train)
    return nn.Dense(10, name="Dense_0")(jnp.mean(x, axis=(1, 2)))


# One computation, three libraries: patch projection, class token, position
# embedding, L pre-norm residual blocks, final norm, head.
PATCHES = jnp.linspace(-1.0, 1.0, 2 * 4 * 16).reshape(2, 4, 16)
D, L_SAME = 8, 3


class LinenSame(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(D, name="patch")(x)
    cls = self.param("cls", nn.initializers.normal(0.1), (1, 1, D))
    pos = self.param("pos", nn.initializers.normal(0.1), (1, 5, D))
    x = jnp.concatenate([jnp.tile(cls, [x.shape[0], 1, 1]), x], axis=1) + pos
    for i in range(L_SAME):
      x = x + nn.Dense(D, name=f"blocks_{i}_mlp")(nn.LayerNorm(name=f"blocks_{i}_ln")(x))
    return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x)[:, 0])


class LinenSameBlock(nn.Module):

  @nn.compact
  def __call__(self, x):
    return x + nn.Dense(D, name="mlp")(nn.LayerNorm(name="ln")(x))


class LinenSameNested(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(D, name="patch")(x)
    cls = self.param("cls", nn.initializers.normal(0.1), (1, 1, D))
    pos = self.param("pos", nn.initializers.normal(0.1), (1, 5, D))
    x = jnp.concatenate([jnp.tile(cls, [x.shape[0], 1, 1]), x], axis=1) + pos
    for i in range(L_SAME):
      x = LinenSameBlock(name=f"blocks_{i}")(x)
    return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x)[:, 0])


class NnxSameBlock(nnx.Module):

  def __init__(self, rngs):
    self.ln = nnx.LayerNorm(D, rngs=rngs)
    self.mlp = nnx.Linear(D, D, rngs=rngs)

  def __call__(self, x):
    return x + self.mlp(self.ln(x))


class NnxSame(nnx.Module):

  def __init__(self, rngs):
    self.patch = nnx.Linear(16, D, rngs=rngs)
    self.cls = nnx.Param(jnp.zeros((1, 1, D)))
    self.pos = nnx.Param(jnp.zeros((1, 5, D)))
    self.blocks = nnx.List([NnxSameBlock(rngs) for _ in range(L_SAME)])
    self.norm = nnx.LayerNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, 10, rngs=rngs)

  def __call__(self, x):
    x = self.patch(x)
    cls = jnp.tile(self.cls[...], [x.shape[0], 1, 1])
    x = jnp.concatenate([cls, x], axis=1) + self.pos[...]
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x)[:, 0])


def equinox_same():
  pytest.importorskip("equinox")
  import equinox as eqx

  class Block(eqx.Module):
    ln: eqx.nn.LayerNorm
    mlp: eqx.nn.Linear

    def __init__(self, key):
      self.ln = eqx.nn.LayerNorm(D)
      self.mlp = eqx.nn.Linear(D, D, key=key)

    def __call__(self, x):
      return x + jax.vmap(self.mlp)(jax.vmap(self.ln)(x))

  class Model(eqx.Module):
    patch: eqx.nn.Linear
    cls: jax.Array
    pos: jax.Array
    blocks: list
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, key):
      keys = jax.random.split(key, L_SAME + 2)
      self.patch = eqx.nn.Linear(16, D, key=keys[0])
      self.cls = jnp.zeros((1, D))
      self.pos = jnp.zeros((5, D))
      self.blocks = [Block(k) for k in keys[2:]]
      self.norm = eqx.nn.LayerNorm(D)
      self.head = eqx.nn.Linear(D, 10, key=keys[1])

    def __call__(self, x):  # one example: (4 patches, 16)
      x = jnp.concatenate([self.cls, jax.vmap(self.patch)(x)], axis=0) + self.pos
      for block in self.blocks:
        x = block(x)
      return self.head(self.norm(x[0]))

  return eqx, Model(jax.random.key(0))


SAME_STEM, SAME_HEAD = ("patch", "cls", "pos"), ("norm", "head")


# ---------------------------------------------------------------------------- the zoo


@pytest.mark.slow
@pytest.mark.parametrize("traced", [False, True])
def test_vit_unrolled(traced):
  model = LinenViT(num_layers=3)
  variables = model.init(jax.random.key(0), zoo.IMAGES)
  params = variables["params"]
  table = ids_table(3, VIT_STEM, lambda i: f"Transformer/encoderblock_{i}", VIT_HEAD)
  expected = expected_factors(params, table, 3)
  structure = caadam_jax.trace_structure(model.apply, variables, zoo.IMAGES) if traced else None
  assert_factors(factors_of(structure or params), expected)
  assert_step_is_adam_times(params, expected, structure=structure)


@pytest.mark.slow
def test_vit_scanned_is_per_slice():
  model = LinenViT(num_layers=3, scan=True)
  variables = model.init(jax.random.key(0), zoo.IMAGES)
  params = variables["params"]
  table = ids_table(0, VIT_STEM, None, ())
  table.update(dict.fromkeys(VIT_HEAD, 3 + 1))
  expected = expected_factors(params, table, 3, stacked={"Transformer/encoderblock": 0})
  traced = caadam_jax.trace_structure(model.apply, variables, zoo.IMAGES)
  assert_factors(factors_of(traced), expected)
  assert_step_is_adam_times(params, expected, structure=traced)
  declared = caadam_jax.infer_structure(params, stacked={"Transformer/encoderblock": 0})
  assert_factors(factors_of(declared), expected)
  # Paths alone would take the stack for one block: init refuses it.
  tx = caadam_jax.scale_by_layer_decay(DECAY)
  with pytest.raises(ValueError, match="stack"):
    tx.init(params)


@pytest.mark.slow
def test_unrolled_and_scanned_vit_same_factors_per_block():
  unrolled = factors_of(
      caadam_jax.infer_structure(LinenViT(3).init(jax.random.key(0), zoo.IMAGES)["params"])
  )
  variables = LinenViT(3, scan=True).init(jax.random.key(0), zoo.IMAGES)
  scanned = factors_of(
      caadam_jax.trace_structure(LinenViT(3, scan=True).apply, variables, zoo.IMAGES)
  )
  for i in range(3):
    got = {v for p, v in unrolled.items() if p[:2] == ("Transformer", f"encoderblock_{i}")}
    assert got == {DECAY ** (3 - i)}
  got = {v for p, v in scanned.items() if p[:2] == ("Transformer", "encoderblock")}
  assert got == {tuple(DECAY ** (3 - i) for i in range(3))}


@pytest.mark.slow
def test_pre_ln_transformer_lm():
  model = zoo.TransformerLM(num_layers=3)
  variables = model.init(jax.random.key(0), zoo.LM_INPUT)
  params = variables["params"]
  table = ids_table(3, ("embed", "pos_embedding"), lambda i: f"block_{i}", ("ln_final",))
  expected = expected_factors(params, table, 3)
  traced = caadam_jax.trace_structure(model.apply, variables, zoo.LM_INPUT)
  assert_factors(factors_of(params), expected)
  assert_factors(factors_of(traced), expected)
  assert_step_is_adam_times(params, expected, structure=traced)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["sequential", "parallel"])
def test_encoder_decoder(decoder):
  src, tgt = jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 4), jnp.int32)
  model = Seq2Seq()
  variables = model.init(jax.random.key(0), src, tgt)
  params = variables["params"]
  if decoder == "sequential":  # decoder blocks continue after the encoder's: L = 2 + 3
    num_blocks = 5
    table = {f"encoder/layers_{i}": i + 1 for i in range(2)}
    table.update({f"decoder/layers_{i}": 2 + i + 1 for i in range(3)})
  else:  # decoder block i shares encoder block i's id: L = max(2, 3)
    num_blocks = 3
    table = {f"encoder/layers_{i}": i + 1 for i in range(2)}
    table.update({f"decoder/layers_{i}": i + 1 for i in range(3)})
  table.update({"src_embed": 0, "tgt_embed": 0, "final_norm": num_blocks + 1})
  table["logits"] = num_blocks + 1
  expected = expected_factors(params, table, num_blocks)
  traced = caadam_jax.trace_structure(model.apply, variables, src, tgt)
  assert_factors(factors_of(params, decoder=decoder), expected)
  assert_factors(factors_of(traced, decoder=decoder), expected)
  assert_step_is_adam_times(params, expected, structure=traced, decoder=decoder)


@pytest.mark.slow
def test_resnet_blocks_and_stages():
  model = zoo.ResNet()
  variables = model.init(jax.random.key(0), zoo.RESNET_INPUT, train=False)
  params = variables["params"]
  table = ids_table(2, ("conv_init", "bn_init"), lambda i: f"ResNetBlock_{i}", ("Dense_0",))
  expected = expected_factors(params, table, 2)
  traced = caadam_jax.trace_structure(model.apply, variables, zoo.RESNET_INPUT, train=False)
  assert_factors(factors_of(params), expected)
  assert_factors(factors_of(traced), expected)
  assert_step_is_adam_times(params, expected, structure=traced)
  # Stages as blocks: two blocks per stage, by a mapping.
  model = ResNet4()
  variables = model.init(jax.random.key(0), zoo.RESNET_INPUT, train=False)
  params = variables["params"]
  stages = {"ResNetBlock_0": 0, "ResNetBlock_1": 0, "ResNetBlock_2": 1, "ResNetBlock_3": 1}
  table = {"conv_init": 0, "bn_init": 0, "Dense_0": 3}
  table.update({k: v + 1 for k, v in stages.items()})
  expected = expected_factors(params, table, 2)
  assert_factors(factors_of(params, blocks=stages), expected)
  assert_step_is_adam_times(params, expected, blocks=stages)
  # The same stages by a pattern whose number is the stage: ranks of 0 and 1.
  by_block = expected_factors(
      params, {**table, **{f"ResNetBlock_{i}": i + 1 for i in range(4)}, "Dense_0": 5}, 4
  )
  assert_factors(factors_of(params, blocks=r"^ResNetBlock_(\d+)/"), by_block)


@pytest.mark.slow
def test_nnx_stack_per_slice():
  model = zoo.ScanMLP(4, n_layers=3, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 4))
  traced = caadam_jax.trace_structure(model, x)
  params = nnx.state(model, nnx.Param)
  expected = expected_factors(params, {}, 3, stacked={"layers": 0})
  assert_factors(factors_of(traced), expected)
  assert_step_is_adam_times(params, expected, structure=traced)


@pytest.mark.slow
def test_linen_nnx_equinox_same_factors():
  eqx, eqx_model = equinox_same()
  linen = LinenSameNested()
  variables = linen.init(jax.random.key(0), PATCHES)
  nnx_model = NnxSame(nnx.Rngs(0))
  structures = {
      "linen-paths": variables["params"],
      "linen": caadam_jax.trace_structure(linen.apply, variables, PATCHES),
      "linen-flat": caadam_jax.trace_structure(
          LinenSame().apply, LinenSame().init(jax.random.key(0), PATCHES), PATCHES
      ),
      "nnx-paths": nnx.state(nnx_model, nnx.Param),
      "nnx": caadam_jax.trace_structure(nnx_model, PATCHES),
      "equinox-paths": eqx.filter(eqx_model, eqx.is_inexact_array),
      "equinox": caadam_jax.trace_structure(eqx_model, PATCHES[0]),
  }
  block = {
      "linen-paths": "blocks_{}",
      "linen": "blocks_{}",
      "linen-flat": "blocks_{}_",
      "nnx-paths": "blocks/{}",
      "nnx": "blocks/{}",
      "equinox-paths": "blocks/{}",
      "equinox": "blocks/{}",
  }
  per_role = {}
  for name, s in structures.items():
    got = factors_of(s, blocks=r"^blocks_(\d+)_" if name == "linen-flat" else None)
    tree = s if not isinstance(s, caadam_jax.Structure) else None
    if tree is not None:
      paths = [p for p, _ in _paths.leaves_with_paths(tree)[0]]
      assert set(got) == set(paths)
    # Oracle: stem 0, blocks i+1, norm and head L+1.
    for path, factor in got.items():
      text = _paths.path_to_str(path)
      i = next((i for i in range(L_SAME) if text.startswith(block[name].format(i))), None)
      want_id = i + 1 if i is not None else 0 if text.split("/")[0] in SAME_STEM else L_SAME + 1
      assert factor == pytest.approx(DECAY ** (L_SAME + 1 - want_id)), (name, text)
    per_role[name] = sorted(got.values())
  assert len({tuple(v) for v in per_role.values()}) == 1, per_role


# ---------------------------------------------------------------------------- alias and cost


@functools.cache
def vit_params():
  # Jitted: one compile instead of one per op of an eager init.
  return jax.jit(LinenViT(num_layers=2).init)(jax.random.key(0), zoo.IMAGES)["params"]


@functools.cache
def vit_shapes():
  """``vit_params()`` as ShapeDtypeStructs, for checks of shapes and structure alone."""
  return jax.eval_shape(
      lambda: LinenViT(num_layers=2).init(jax.random.key(0), zoo.IMAGES)["params"]
  )


def test_adamw_layer_decay_state_is_adamw_state():
  params = vit_shapes()
  for kwargs in ({}, {"mask": jax.tree.map(lambda p: p.ndim > 1, params)}):
    for lr in (1e-3, optax.linear_schedule(1e-3, 0.0, 10)):
      ours = jax.eval_shape(caadam_jax.adamw_layer_decay(lr, 0.75, **kwargs).init, params)
      ref = jax.eval_shape(optax.adamw(lr, **kwargs).init, params)
      assert jax.tree.structure(ours) == jax.tree.structure(ref)
      chex.assert_trees_all_equal_shapes_and_dtypes(ours, ref)


@pytest.mark.slow
def test_adamw_layer_decay_step_is_adamw_times_factor():
  params = vit_params()
  grads = jax.tree.map(lambda p: jnp.sin(2.0 * p) + 0.05, params)
  table = ids_table(2, VIT_STEM, lambda i: f"Transformer/encoderblock_{i}", VIT_HEAD)
  expected = expected_factors(params, table, 2, decay=0.6)
  tx = caadam_jax.adamw_layer_decay(1e-2, 0.6, weight_decay=0.1)
  ref_tx = optax.adamw(1e-2, weight_decay=0.1)
  state, ref_state = tx.init(params), ref_tx.init(params)
  step = jax.jit(lambda g, s, p: tx.update(g, s, p))
  ref_step = jax.jit(lambda g, s, p: ref_tx.update(g, s, p))
  for _ in range(2):
    ours, state = step(grads, state, params)
    ref, ref_state = ref_step(grads, ref_state, params)
    for path, r in _paths.leaves_with_paths(ref)[0]:
      got = dict(_paths.leaves_with_paths(ours)[0])[path]
      np.testing.assert_allclose(got, r * np.float32(expected[path]), rtol=1e-6, atol=1e-9)
  chex.assert_trees_all_close(state, ref_state)  # the same moments: the factor is after Adam


@pytest.mark.slow
def test_inject_hyperparams_decay_traced_and_nan_outside_range():
  params = vit_params()
  grads = jax.tree.map(jnp.ones_like, params)
  injected = optax.inject_hyperparams(caadam_jax.adamw_layer_decay)(
      learning_rate=1e-2, decay=0.5, weight_decay=0.0
  )
  plain = caadam_jax.adamw_layer_decay(1e-2, 0.5, weight_decay=0.0)
  state = injected.init(params)
  ours, state = jax.jit(injected.update)(grads, state, params)
  ref, _ = plain.update(grads, plain.init(params), params)
  chex.assert_trees_all_close(ours, ref, rtol=1e-4)  # float32 injected b1, b2 vs Python floats
  state.hyperparams["decay"] = jnp.asarray(1.5)
  bad, _ = jax.jit(injected.update)(grads, state, params)
  assert np.isnan(np.asarray(bad["embedding"]["kernel"])).all()


@pytest.mark.parametrize(
    ("decay", "error", "match"),
    [
        (0.0, ValueError, r"decay=0.0 is out of range: expected 0 < decay <= 1"),
        (1.5, ValueError, r"0 < decay <= 1"),
        (float("nan"), ValueError, "finite"),
        ("0.7", TypeError, "decay must be a real scalar"),
        (True, TypeError, "bool"),
        (jnp.ones(2), ValueError, "shape"),
    ],
)
def test_bad_decay(decay, error, match):
  with pytest.raises(error, match=match):
    caadam_jax.scale_by_layer_decay(decay)
  with pytest.raises(error, match=match):
    caadam_jax.adamw_layer_decay(1e-3, decay)


def test_decay_one_is_identity():
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), vit_shapes())
  tx = caadam_jax.scale_by_layer_decay(1.0)
  out, _ = tx.update(params, tx.init(params))
  chex.assert_trees_all_equal(out, params)


# ---------------------------------------------------------------------------- errors


def test_no_repeated_block_is_an_error():
  variables = jax.eval_shape(zoo.EncoderDecoder().init, jax.random.key(0), zoo.SRC, zoo.TGT)
  tx = caadam_jax.scale_by_layer_decay(DECAY)
  with pytest.raises(ValueError, match=r"no repeated block found.*blocks="):
    tx.init(variables["params"])


def test_paths_cannot_order_two_families():
  params = {
      "left": {f"blocks_{i}": {"kernel": jnp.ones((2, 2))} for i in range(2)},
      "right": {f"blocks_{i}": {"kernel": jnp.ones((2, 2))} for i in range(2)},
  }
  with pytest.raises(ValueError, match="paths alone cannot order them"):
    caadam_jax.scale_by_layer_decay(DECAY).init(params)


def test_bad_overrides():
  params = vit_shapes()
  with pytest.raises(ValueError, match="no group"):
    caadam_jax.describe_layer_decay(params, blocks="encoderblock", show=False)
  with pytest.raises(ValueError, match="matches no parameter path"):
    caadam_jax.describe_layer_decay(params, blocks=r"layer_(\d+)", show=False)
  with pytest.raises(ValueError, match="did you mean"):
    caadam_jax.describe_layer_decay(params, blocks={"Transformer/encoderblock_9": 0}, show=False)
  with pytest.raises(ValueError, match="missing"):
    caadam_jax.describe_layer_decay(
        params,
        blocks={"Transformer/encoderblock_0": 0, "Transformer/encoderblock_1": 2},
        show=False,
    )
  # Arguments of the wrong type, on purpose: the checks at run time are under test.
  with pytest.raises(ValueError, match="decoder must be"):
    caadam_jax.describe_layer_decay(
        params, decoder="interleaved", show=False  # pyright: ignore[reportArgumentType]
    )
  with pytest.raises(TypeError, match="structure must be"):
    caadam_jax.scale_by_layer_decay(DECAY, structure=params)  # pyright: ignore[reportArgumentType]


def test_stem_override():
  params = vit_shapes()
  got = factors_of(params, stem=["embedding"])  # cls and posembed now count as head
  assert got[("embedding", "kernel")] == pytest.approx(DECAY**3)
  assert got[("cls",)] == 1.0
  assert got[("Transformer", "posembed_input", "pos_embedding")] == 1.0


def test_describe_layer_decay_prints_ids_and_factors():
  text = caadam_jax.describe_layer_decay(vit_shapes(), 0.5, as_string=True)
  assert "L=2 blocks" in text
  line = next(x for x in text.splitlines() if x.startswith("cls "))
  assert re.split(r"\s+", line)[1:] == ["stem", "0", "0.1250"]
  line = next(x for x in text.splitlines() if x.startswith("head/kernel"))
  assert re.split(r"\s+", line)[1:] == ["head", "3", "1.0000"]


# ---------------------------------------------------------------------------- the study


@pytest.mark.slow
@pytest.mark.external
def test_study_selects_on_validation_and_compares_paired():
  from benchmarks import layer_decay_finetune as study

  lrs, decays = [1e-3, 1e-2], [1.0, 0.5]
  # (lr, decay, seed): AdamW is best at lr 1e-2 on validation, layer decay at lr 1e-3.
  val = np.array([[[0.5, 0.5, 0.5], [0.9, 0.9, 0.9]], [[0.8, 0.8, 0.8], [0.1, 0.1, 0.1]]])
  test = np.array([[[0.0, 0.0, 0.0], [0.9, 0.8, 0.7]], [[0.8, 0.8, 0.8], [0.0, 0.0, 0.0]]])
  analysis = study.analyse(val, test, lrs, decays)
  assert analysis["adamw"]["lr"] == 1e-2
  assert analysis["adamw"]["test_err_mean"] == pytest.approx(0.2)
  row, selected = analysis["comparisons"]
  assert (row["lr"], row["decay"]) == (1e-3, 0.5) == (selected["lr"], selected["decay"])
  assert row["test_err_mean"] == pytest.approx(0.2)
  # Per seed: errors 0.1, 0.2, 0.3 against 0.2: relative -0.5, 0, +0.5.
  assert row["rel"] == pytest.approx(0.0)
  assert row["wins"] == 1


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.data
# The study's CNN uses nn.avg_pool, which divides a float32 sum by an int32 count.
@pytest.mark.standard_promotion
def test_study_quick_end_to_end(tmp_path):
  import json

  from benchmarks import layer_decay_finetune as study

  assert study.main(["--quick", "--out", str(tmp_path / "study")]) == 0
  result = json.loads((tmp_path / "study.json").read_text())
  assert np.asarray(result["val_acc"]).shape == (2, 2, 2)  # lrs, decays, seeds
  assert (tmp_path / "study.png").stat().st_size > 0
  assert "Tuned AdamW" in (tmp_path / "study.md").read_text()


def test_hugging_face_style_string_indices():
  # GPT-2 as Hugging Face's Flax port names it: blocks under transformer/h/"0".."2".
  w = jnp.ones
  params = {
      "transformer": {
          "wte": {"embedding": w((10, 4))},
          "wpe": {"embedding": w((6, 4))},
          "h": {str(i): {"attn": {"kernel": w((4, 4))}, "ln_1": {"scale": w(4)}} for i in range(3)},
          "ln_f": {"scale": w(4)},
      },
      "lm_head": {"kernel": w((4, 10))},
  }
  table = ids_table(
      3,
      ("transformer/wte", "transformer/wpe"),
      lambda i: f"transformer/h/{i}",
      ("transformer/ln_f", "lm_head"),
  )
  expected = expected_factors(params, table, 3, decay=0.5)
  assert_factors(factors_of(params, decay=0.5), expected)
