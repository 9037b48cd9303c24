"""Real-model tests: small versions of the architectures people train.

Models are in ``benchmarks/model_zoo.py`` (Flax linen ResNet, pre-LN Transformer
LM, encoder-decoder, ViT, MLP-Mixer; NNX scan-over-layers and Gemma-style block;
Equinox CNN and ViT). Every expected connection count and depth is derived by
hand in the comments from the layer shapes and the forward pass; factors come
from the formulas of docs/method.md ("The factors") written out here. Parameters are built
with ``jax.eval_shape`` wherever only shapes matter (tracing needs no values).
"""

from __future__ import annotations

import pathlib
import sys
import warnings

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

EqxCNN, EqxViT, eqx = zoo.equinox_zoo()


def records(structure):
  """Counted layers as {'a/b': (connections, depth)}."""
  return {
      caadam_jax.path_to_str(layer): (r.connections, r.depth)
      for layer, r in structure.layers.items()
  }


def shapes(module, *args, **kwargs):
  """The variables of a linen module as ShapeDtypeStructs (no compute)."""
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))


def factors(structure, strategy):
  return {r.leaf: r.factor for r in caadam_jax.describe(structure, strategy=strategy, show=False)}


# ------------------------------------------------------------------ ResNet


def resnet_structure():
  variables = shapes(zoo.ResNet(), zoo.RESNET_INPUT, False)
  return variables, caadam_jax.trace_structure(
      zoo.ResNet().apply, variables, zoo.RESNET_INPUT, train=False
  )


def test_resnet_forward_order_stem_first_head_last_projection_beside_block():
  _, structure = resnet_structure()
  # Conv (kh, kw, in, out): stem 3*3*3*4 = 108; block 0: 3*3*4*4 = 144 twice; block 1:
  # 3*3*4*8 = 288, 3*3*8*8 = 576, projection 1*1*4*8 = 32; classifier 8*10 = 80.
  # Depth = longest path: the projection reads the block input, beside Conv_0 (3);
  # Dense_0 after Conv_1 (4). Path order would put Dense_0 first, conv_init after.
  assert records(structure) == {
      "conv_init": (108, 0),
      "ResNetBlock_0/Conv_0": (144, 1),
      "ResNetBlock_0/Conv_1": (144, 2),
      "ResNetBlock_1/Conv_0": (288, 3),
      "ResNetBlock_1/conv_proj": (32, 3),
      "ResNetBlock_1/Conv_1": (576, 4),
      "Dense_0": (80, 5),
  }
  # BatchNorm scales and biases are not layers: factor 1, not in the statistics.
  assert structure.leaves[("bn_init", "scale")].connections is None
  assert structure.leaves[("ResNetBlock_1", "norm_proj", "bias")].connections is None
  assert structure.statistics == caadam_jax.Statistics(32.0, 144.0, 576.0, 6)


def test_trace_errors_tell_to_pass_train_false():
  variables = shapes(zoo.ResNet(), zoo.RESNET_INPUT, False)
  # Train mode: BatchNorm's pmean over axis "batch" is unbound outside pmap.
  with pytest.raises(ValueError, match="pass train=False"):
    caadam_jax.trace_structure(
        zoo.ResNet().apply, variables, zoo.RESNET_INPUT, train=True, mutable=["batch_stats"]
    )
  with pytest.raises(TypeError, match="train=False"):  # the required argument is missing
    caadam_jax.trace_structure(zoo.ResNet().apply, variables, zoo.RESNET_INPUT)


def test_numpy_scalar_static_arguments_are_static():
  """Bad-input item 13 (docs/validation.md): np.True_ is static like True, not traced."""
  params = {"w": jnp.ones((4, 3))}

  def apply(p, x, flag):
    return x @ p["w"] if flag else x

  structure = caadam_jax.trace_structure(apply, params, jnp.ones((2, 4)), np.True_)
  assert records(structure) == {"<root>": (12, 0)}
  structure = caadam_jax.trace_structure(apply, params, jnp.ones((2, 4)), flag=np.bool_(False))
  assert records(structure) == {"<root>": (12, 0)}  # unused: the path rule (2-D) counts it


def test_structure_serves_the_whole_variables_dict_and_params_alike():
  """A TrainState created with params=variables (ogbg-style)."""
  variables, structure = resnet_structure()
  ones = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), variables)
  tx = caadam_jax.scale_by_strategy("depth", structure=structure)
  for tree in (ones, ones["params"]):
    updates, _ = jax.jit(tx.update)(tree, tx.init(tree))
    params = updates.get("params", updates)
    # D = 6, g = 1: the stem (depth 0) gets 2 ** (5/6), the classifier (depth 5) 1.
    np.testing.assert_allclose(params["conv_init"]["kernel"], 2 ** (5 / 6), rtol=1e-6)
    np.testing.assert_allclose(params["ResNetBlock_1"]["conv_proj"]["kernel"], 2 ** (2 / 6))
    np.testing.assert_allclose(params["Dense_0"]["bias"], 1.0)
  updates, _ = jax.jit(tx.update)(ones, tx.init(ones))
  np.testing.assert_allclose(updates["batch_stats"]["bn_init"]["mean"], 1.0)  # other collections
  # And the other way round: a structure inferred from the variables dict on params.
  inferred = caadam_jax.infer_structure(variables)
  caadam_jax.caadam(structure=inferred, strategy="additive").init(ones["params"])


def test_default_path_refuses_a_wrong_order_and_names_the_fix():
  """The ResNet's sorted paths put the classifier first."""
  params = jax.tree.map(
      lambda s: jnp.zeros(s.shape), shapes(zoo.ResNet(), zoo.RESNET_INPUT, False)["params"]
  )
  with pytest.raises(ValueError, match=r"forward order.*trace_structure"):
    caadam_jax.caadam(strategy="depth").init(params)
  vit = jax.tree.map(lambda s: jnp.zeros(s.shape), shapes(zoo.ViT(), zoo.IMAGES)["params"])
  with pytest.raises(ValueError, match="named"):
    caadam_jax.scale_by_depth().init(vit)
  # Connection strategies do not read depths: the default path is fine there.
  caadam_jax.caadam(strategy="additive").init(params)
  # Declaring that path order is right is the explicit opt-out.
  caadam_jax.caadam(strategy="depth", structure=caadam_jax.infer_structure(params)).init(params)


class Cnn(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(2)(x)


class NnxCnn(nnx.Module):

  def __init__(self, rngs):
    self.conv1 = nnx.Conv(3, 4, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
    self.linear1 = nnx.Linear(4 * 64, 8, rngs=rngs)
    self.linear2 = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
    return self.linear2(nnx.relu(self.linear1(x.reshape(x.shape[0], -1))))


def test_default_path_keeps_the_sequential_one_liner_silent():
  mlp = shapes(zoo.LinenMLP(), jnp.ones((1, 4)))["params"]
  cnn = shapes(Cnn(), jnp.ones((1, 8, 8, 3)))["params"]
  nnx_cnn = nnx.state(nnx.eval_shape(lambda: NnxCnn(nnx.Rngs(0))), nnx.Param)
  seq = nnx.state(
      nnx.eval_shape(
          lambda: nnx.Sequential(
              nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(8, 2, rngs=nnx.Rngs(0))
          )
      ),
      nnx.Param,
  )
  eqx_cnn = eqx.filter(eqx.filter_eval_shape(EqxCNN, jax.random.key(0)), eqx.is_array)
  for tree in (mlp, cnn, nnx_cnn, seq, eqx_cnn):
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape), tree)
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      for strategy in caadam_jax.STRATEGY_NAMES:
        caadam_jax.caadam(strategy=strategy).init(zeros)
  # Natural path order is the forward order in these: Conv_0, Conv_1, Dense_0, Dense_1.
  assert list(records(caadam_jax.infer_structure(cnn))) == [
      "Conv_0",
      "Conv_1",
      "Dense_0",
      "Dense_1",
  ]


def layer(*shape):
  return {"kernel": jnp.zeros(shape)}


@pytest.mark.parametrize(
    "tree, why",
    [
        ({"w": jnp.zeros((4, 3)), "layer": layer(3, 2)}, "root"),
        ({"Dense_0": layer(4, 3), "conv1": layer(1, 1, 3, 2)}, "several naming patterns"),
        ({"encoder": layer(4, 3), "decoder": layer(3, 2)}, "named, not numbered"),
        ({"blocks": {0: {"mlp": layer(4, 4), "attn": layer(4, 4)}}}, "named, not numbered"),
    ],
)
def test_default_depth_refuses_each_untrusted_order(tree, why):
  with pytest.raises(ValueError, match=why):
    caadam_jax.scale_by_depth().init(tree)
  caadam_jax.scale_by_connection_minmaxmedian().init(tree)  # depth-free: accepted


class LinenScan(nn.Module):
  name_stack: bool = False

  @nn.compact
  def __call__(self, x):
    class Block(nn.Module):

      @nn.compact
      def __call__(self, x, _):
        init = nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
        # No bias: only the metadata (or the linen name) can tell (3, 4, 4) is a stack.
        return nn.relu(nn.Dense(4, use_bias=False, kernel_init=init)(x)), None

    stack = nn.scan(
        Block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        length=3,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    name = "blocks" if self.name_stack else None
    return stack(name=name)(x, None)[0]


def test_default_path_refuses_undeclared_stacks():
  """Stacked layers would count as one layer (3x connections, one depth)."""
  x = jnp.ones((2, 4))
  # A linen nn.scan: named "ScanBlock_0" by linen and with a 'layers' partition axis.
  auto = jax.tree.map(lambda s: jnp.zeros(s.shape), shapes(LinenScan(), x)["params"])
  # The refusal names the stack's prefix (the scanned module), not a sublayer.
  with pytest.raises(ValueError, match=r"stack.*stacked=\{'ScanBlock_0': 0\}"):
    caadam_jax.caadam(strategy="additive").init(auto)
  # Named by the user: the box's partition names give it away ("layers" at axis 0).
  boxed = jax.jit(LinenScan(name_stack=True).init)(jax.random.key(0), x)["params"]
  assert isinstance(boxed["blocks"]["Dense_0"]["kernel"], nn.Partitioned)
  with pytest.raises(ValueError, match="partitioning metadata names axis 0 'layers'"):
    caadam_jax.caadam(strategy="additive").init(boxed)
  # The NNX scan-over-layers example: bias (3, 4) is not the kernel's trailing (4, 4).
  model = nnx.eval_shape(lambda: zoo.ScanMLP(4, n_layers=3, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="trace_structure"):
    caadam_jax.caadam(strategy="additive").init(nnx.state(model, nnx.Param))


# ------------------------------------------------------------ Transformer LM


def test_transformer_lm_roles_and_order():
  variables = shapes(zoo.TransformerLM(), zoo.LM_INPUT)
  structure = caadam_jax.trace_structure(zoo.TransformerLM().apply, variables, zoo.LM_INPUT)
  # Embed (32, 8): 256, gathered and (tied) contracted by the logits. q/k/v
  # kernels (8, 2, 4) and out (2, 4, 8): 64; mlp 8*32 = 256 twice. q, k, v read
  # the same normed input (one depth), out after them, then the MLP.
  expected = {"embed": (256, 0)}
  for i in range(2):
    base = 4 * i  # block i: q, k, v at 4i + 1, out 4i + 2, mlp_in 4i + 3, mlp_out 4i + 4
    expected.update({f"block_{i}/attn/{n}": (64, base + 1) for n in ("query", "key", "value")})
    expected[f"block_{i}/attn/out"] = (64, base + 2)
    expected[f"block_{i}/mlp_in"] = (256, base + 3)
    expected[f"block_{i}/mlp_out"] = (256, base + 4)
  assert records(structure) == expected
  # The positional embedding (1, 6, 8) is only added: no connections, factor 1.
  assert structure.leaves[("pos_embedding",)].connections is None
  assert structure.leaves[("block_0", "ln_attn", "scale")].connections is None
  assert factors(structure, "depth")["pos_embedding"] == 1.0
  # By shape the 3-D positional embedding looks like a weight; the path rules know it by
  # its name and, like the trace, give it factor 1 outside the statistics.
  inferred = caadam_jax.infer_structure(variables["params"])
  assert inferred.leaves[("pos_embedding",)] == structure.leaves[("pos_embedding",)]._replace(
      layer=None
  )


def test_encoder_decoder_cross_attention_after_the_encoder():
  variables = shapes(zoo.EncoderDecoder(), zoo.SRC, zoo.TGT)
  structure = caadam_jax.trace_structure(zoo.EncoderDecoder().apply, variables, zoo.SRC, zoo.TGT)
  got = records(structure)
  # Embeddings (16, 8) 128; attention kernels 8*2*4 = 64; Dense 8*8 = 64; logits 128.
  # Cross-attention: the query reads the decoder (after its self-attention: 3), the
  # key and value read the encoder output (after encoder_mlp at 3: 4), out after all.
  assert got == {
      "src_embed": (128, 0),
      "tgt_embed": (128, 0),
      **{f"encoder_attn/{n}": (64, 1) for n in ("query", "key", "value")},
      **{f"decoder_self/{n}": (64, 1) for n in ("query", "key", "value")},
      "encoder_attn/out": (64, 2),
      "decoder_self/out": (64, 2),
      "encoder_mlp": (64, 3),
      "decoder_cross/query": (64, 3),
      "decoder_cross/key": (64, 4),
      "decoder_cross/value": (64, 4),
      "decoder_cross/out": (64, 5),
      "decoder_mlp": (64, 6),
      "logits": (128, 7),
  }
  # In first-use order, every encoder layer comes before every decoder layer.
  first = records(
      caadam_jax.trace_structure(
          zoo.EncoderDecoder().apply, variables, zoo.SRC, zoo.TGT, depth_rule="first_use"
      )
  )
  encoder = [d for k, (_, d) in first.items() if k.startswith(("src", "encoder"))]
  decoder = [d for k, (_, d) in first.items() if not k.startswith(("src", "encoder"))]
  assert max(encoder) < min(decoder)


# ---------------------------------------------------------------- ViT, Mixer


def vit_structure():
  variables = shapes(zoo.ViT(), zoo.IMAGES)
  return variables, caadam_jax.trace_structure(zoo.ViT().apply, variables, zoo.IMAGES)


def test_vit_class_token_and_position_embedding_are_not_layers():
  """The cls token and pos_embedding are only concatenated and added."""
  variables, structure = vit_structure()
  block = "Transformer_encoderblock_0"
  attn = f"{block}/MultiHeadDotProductAttention_0"
  # Patch conv 4*4*3*8 = 384; q/k/v/out 64; MLP 8*16 = 128 twice; head 8*10 = 80.
  assert records(structure) == {
      "embedding": (384, 0),
      **{f"{attn}/{n}": (64, 1) for n in ("query", "key", "value")},
      f"{attn}/out": (64, 2),
      f"{block}/MlpBlock_0/Dense_0": (128, 3),
      f"{block}/MlpBlock_0/Dense_1": (128, 4),
      "head": (80, 5),
  }
  assert structure.leaves[("cls",)].connections is None
  assert structure.leaves[("Transformer_posembed_input", "pos_embedding")].connections is None
  # Sorted c: 64 x4, 80, 128, 128, 384: c_min 64, c_med (64 + 80)/2 = 72, c_max 384.
  assert structure.statistics == caadam_jax.Statistics(64.0, 72.0, 384.0, 6)
  add = factors(structure, "additive")
  assert add["cls"] == 1.0 and add[f"{attn}/query/kernel"] == pytest.approx(1.95)
  assert add["head/kernel"] == pytest.approx(1 - 0.95 * (80 - 72) / (384 - 72))
  assert add["embedding/kernel"] == pytest.approx(0.05)
  mult = factors(structure, "multiplicative")
  assert mult[f"{block}/MlpBlock_0/Dense_0/kernel"] == pytest.approx(5 ** ((128 - 72) / 312))
  assert factors(structure, "depth")["embedding/bias"] == pytest.approx(2 ** (5 / 6))


def test_mixer_token_mixing_before_channel_mixing():
  variables = shapes(zoo.Mixer(), zoo.IMAGES)
  structure = caadam_jax.trace_structure(zoo.Mixer().apply, variables, zoo.IMAGES)
  # Stem 4*4*3*8 = 384; token mixing on 4 tokens: 4*6 = 24 and 6*4 = 24; channel
  # mixing 8*16 = 128 twice; head 80. Sorted paths put channel_mixing first.
  assert records(structure) == {
      "stem": (384, 0),
      "MixerBlock_0/token_mixing/Dense_0": (24, 1),
      "MixerBlock_0/token_mixing/Dense_1": (24, 2),
      "MixerBlock_0/channel_mixing/Dense_0": (128, 3),
      "MixerBlock_0/channel_mixing/Dense_1": (128, 4),
      "head": (80, 5),
  }


# ---------------------------------------------------------------------- NNX


def as_numpy(x):
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x)


@nnx.jit
def make_scan_mlp():
  return zoo.ScanMLP(4, n_layers=3, rngs=nnx.Rngs(0))


def test_nnx_scan_over_layers_with_batchnorm_and_dropout_in_train_mode():
  """Bad-input item 8 (docs/validation.md): BatchStat and RngCount under nnx.scan, train mode."""
  model = make_scan_mlp()
  before = jax.tree.map(as_numpy, nnx.state(model, nnx.Not(nnx.Param)))
  x = jnp.ones((2, 4))
  structure = caadam_jax.trace_structure(model, x)  # train mode: BatchNorm and Dropout active
  # One (3, 4, 4) kernel = 3 layers of 4*4 = 16, one depth each; BatchNorm not counted.
  assert records(structure) == {f"layers/linear/[{i}]": (16, i) for i in range(3)}
  assert structure.leaves[("layers", "bn", "scale")].connections is None
  after = jax.tree.map(as_numpy, nnx.state(model, nnx.Not(nnx.Param)))
  jax.tree.map(np.testing.assert_array_equal, before, after)  # the model is left untouched
  model.eval()
  assert records(caadam_jax.trace_structure(model, x)) == records(structure)


def test_gemma_fused_qkv_and_grouped_query_attention():
  tokens = zoo.LM_INPUT
  mha = caadam_jax.trace_structure(
      nnx.eval_shape(lambda: zoo.GemmaLM(kv_heads=4, rngs=nnx.Rngs(0))), tokens
  )
  # Embedding (32, 8) 256 at the root (gathered, and contracted by the tied logits).
  # Fused qkv w (3, 4 heads, 8, 2): 192, ONE layer; attn_vec (4, 2, 8) 64;
  # gating (2, 8, 16) 256; linear (16, 8) 128. RMSNorm scales are only multiplied.
  assert records(mha) == {
      "<root>": (256, 0),
      "attn/qkv_einsum": (192, 1),
      "attn/attn_vec_einsum": (64, 2),
      "gating_einsum": (256, 3),
      "linear": (128, 4),
  }
  assert mha.leaves[("pre_attention_norm", "scale")].connections is None
  # GQA, 2 kv heads: q (4, 8, 2) 64 and fused kv (2, 2, 8, 2) 64 side by side.
  gqa = caadam_jax.trace_structure(
      nnx.eval_shape(lambda: zoo.GemmaLM(kv_heads=2, rngs=nnx.Rngs(0))), tokens
  )
  assert records(gqa)["attn/q_einsum"] == (64, 1)
  assert records(gqa)["attn/kv_einsum"] == (64, 1)
  assert records(gqa)["attn/attn_vec_einsum"] == (64, 2)


# ------------------------------------------------------------------ Equinox


def test_equinox_modules_passed_whole():
  cnn = eqx.filter_eval_shape(EqxCNN, jax.random.key(0))
  structure = caadam_jax.trace_structure(cnn, jnp.ones((1, 8, 8)))
  # Conv2d weight (3, 1, 4, 4): 48; Linear weights (out, in): 16*48 = 768, 10*16 = 160.
  assert records(structure) == {"layers/0": (48, 0), "layers/4": (768, 1), "layers/6": (160, 2)}
  # The conv bias (3, 1, 1) is not a weight: it shares its layer's count and factor.
  assert structure.leaves[("layers", 0, "bias")].layer == ("layers", 0)
  # The structure matches what an Equinox training loop hands optax.
  caadam_jax.caadam(structure=structure, strategy="additive").init(
      eqx.filter(cnn, eqx.is_inexact_array)
  )


def test_equinox_vit_tokens_and_norm_weights_are_not_layers():
  """Equinox's LayerNorm.weight (1-D), root cls_token and positional_embedding."""
  vit = eqx.filter_eval_shape(lambda: EqxViT(key=jax.random.key(0)))
  structure = caadam_jax.trace_structure(vit, jnp.ones((1, 8, 8)))
  attn = "attention_blocks/0/attention"
  # Patch Linear 16 -> 8: 128; q/k/v/out (8, 8): 64; MLP 8*16 = 128 twice; head 8*10 = 80.
  assert records(structure) == {
      "patch_embedding": (128, 0),
      **{f"{attn}/{n}_proj": (64, 1) for n in ("query", "key", "value")},
      f"{attn}/output_proj": (64, 2),
      "attention_blocks/0/linear1": (128, 3),
      "attention_blocks/0/linear2": (128, 4),
      "mlp/layers/1": (80, 5),
  }
  for leaf in [("cls_token",), ("positional_embedding",), ("mlp", "layers", 0, "weight")]:
    assert structure.leaves[leaf].connections is None
  # infer_structure: a 1-D tensor is never a weight, whatever its name.
  inferred = caadam_jax.infer_structure(eqx.filter(vit, lambda x: hasattr(x, "shape")))
  assert inferred.leaves[("attention_blocks", 0, "layer_norm1", "weight")].connections is None
  assert inferred.leaves[("mlp", "layers", 0, "weight")].connections is None


def test_same_factors_from_linen_nnx_and_equinox():
  x = jnp.ones((1, 4))
  linen = caadam_jax.trace_structure(
      zoo.LinenMLP().apply, shapes(zoo.LinenMLP(), x), x, depth_rule="first_use"
  )
  nnx_model = nnx.eval_shape(lambda: zoo.NnxMLP(nnx.Rngs(0)))
  nnx_structure = caadam_jax.trace_structure(nnx_model, x)
  mlp = eqx.filter_eval_shape(
      lambda: eqx.nn.MLP(4, 2, 8, depth=2, activation=jax.nn.relu, key=jax.random.key(0))
  )
  eqx_structure = caadam_jax.trace_structure(mlp, jnp.ones(4))
  # 4*8 = 32, 8*8 = 64, 8*2 = 16 at depths 0, 1, 2 in all three.
  want = [(32, 0), (64, 1), (16, 2)]
  for structure in (linen, nnx_structure, eqx_structure):
    assert list(records(structure).values()) == want
  # c_min 16, c_med 32, c_max 64: additive 1, 1 - 0.95, 1 + 0.95; multiplicative 1, 5, 5;
  # depth (D = 3, g = 1) 2 ** (2/3), 2 ** (1/3), 1.
  expected = {
      "additive": [1.0, 0.05, 1.95],
      "multiplicative": [1.0, 5.0, 5.0],
      "depth": [2 ** (2 / 3), 2 ** (1 / 3), 1.0],
  }
  for strategy, want in expected.items():
    for s in (linen, nnx_structure, eqx_structure):
      got = [f for leaf, f in factors(s, strategy).items() if leaf.endswith(("kernel", "weight"))]
      assert got == pytest.approx(want), (strategy, s)


# ---------------------------------------------------- jitted training steps


def check_first_step(structure, strategy, grads, updates):
  """Step 1 is Adam's first step times each leaf's factor.

  Adam's first step is ``-lr * g / (|g| + eps)`` (bias-corrected moments g and g**2).
  """
  factor = structure.factors(strategy)
  flat = dict(leaves(updates))
  for path, g in leaves(grads):
    want = np.asarray(factor[path]) * (-1e-3 * np.asarray(g) / (np.abs(g) + 1e-8))
    np.testing.assert_allclose(flat[path], want, rtol=1e-4, atol=1e-7, err_msg=str(path))


def check_training(loss_fn, params, structure):
  """Three jitted steps per strategy, the first checked against Adam's."""
  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  apply = jax.jit(optax.apply_updates)
  for strategy in caadam_jax.STRATEGY_NAMES:
    tx = caadam_jax.caadam(1e-3, strategy=strategy, structure=structure)
    update = jax.jit(tx.update)
    current, state, losses = params, tx.init(params), []
    for i in range(3):
      loss, grads = grad_fn(current)
      updates, state = update(grads, state, current)
      if i == 0:
        check_first_step(structure, strategy, grads, updates)
      current = apply(current, updates)
      losses.append(float(loss))
    assert np.all(np.isfinite(losses)), (strategy, losses)


def leaves(tree):
  return _paths.leaves_with_paths(tree)[0]


@pytest.mark.slow  # whole-model training steps
def test_training_steps_lm():
  model = zoo.TransformerLM()
  params = jax.jit(model.init)(jax.random.key(0), zoo.LM_INPUT)["params"]
  structure = caadam_jax.trace_structure(model.apply, {"params": params}, zoo.LM_INPUT)
  targets = jnp.arange(12).reshape(2, 6) % 32

  def loss_fn(p):
    logits = jnp.asarray(model.apply({"params": p}, zoo.LM_INPUT))
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  check_training(loss_fn, params, structure)


@pytest.mark.slow  # whole-model training steps
def test_training_steps_nnx_scan_in_train_mode():
  x = jnp.linspace(-1, 1, 8).reshape(2, 4)
  structure = caadam_jax.trace_structure(make_scan_mlp(), x)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
    optimizer.update(model, grads)
    return loss, grads

  for strategy in caadam_jax.STRATEGY_NAMES:  # BatchNorm, Dropout in train mode, nnx.Optimizer
    model = make_scan_mlp()
    tx = caadam_jax.caadam(1e-3, strategy=strategy, structure=structure)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    losses = []
    for i in range(3):
      before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
      loss, grads = train_step(model, optimizer)
      if i == 0:
        updates = jax.tree.map(lambda a, b: a - b, nnx.state(model, nnx.Param), before)
        check_first_step(structure, strategy, grads, updates)
      losses.append(float(loss))
    assert np.all(np.isfinite(losses)), (strategy, losses)


@pytest.mark.slow  # whole-model training steps
def test_training_steps_equinox_vit():
  vit = eqx.filter_jit(lambda: EqxViT(key=jax.random.key(0)))()
  image = jnp.linspace(0, 1, 64).reshape(1, 8, 8)
  structure = caadam_jax.trace_structure(vit, image)
  params, static = eqx.partition(vit, eqx.is_inexact_array)

  def loss_fn(p):
    return jnp.sum(eqx.combine(p, static)(image) ** 2)

  check_training(loss_fn, params, structure)


# ----------------------------------------------------------------- describe


def test_describe_full_names_on_pipes_string_and_width(capsys, monkeypatch):
  _, structure = resnet_structure()
  rows = caadam_jax.describe(structure, strategy="depth")
  out = capsys.readouterr().out  # captured: not a terminal
  assert "ResNetBlock_1/conv_proj/kernel" in out and "…" not in out
  table = caadam_jax.describe(structure, strategy="depth", as_string=True)
  assert isinstance(table, str) and table == out.rstrip("\n")
  assert capsys.readouterr().out == ""  # as_string prints nothing
  assert [r.leaf for r in rows][:2] == ["conv_init/kernel", "ResNetBlock_0/Conv_0/kernel"]
  monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)  # a terminal: rich
  caadam_jax.describe(structure, strategy="depth", width=200)
  assert "ResNetBlock_1/conv_proj/kernel" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [None, {}, {"a": "kernel"}])
def test_describe_rejects_what_is_not_params_or_structure(bad):
  with pytest.raises(TypeError, match="params pytree of arrays .* or a caadam_jax.Structure"):
    caadam_jax.describe(bad, show=False)


# ---------------------------------------------------------- the docs page

# Its code blocks run in tests/test_docs.py, with every page's.
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "your_model.md"


@pytest.mark.slow  # reruns a docs page's scripts
def test_docs_page_tables_are_the_scripts_output():
  """The LM and ViT tables on the page are what the benchmark scripts print now."""
  from benchmarks import describe_models
  from benchmarks import lm_factors

  text = DOC.read_text()
  vit = describe_models.summary(vit_structure()[1])
  assert vit in text
  for fused in (False, True):
    assert lm_factors.report(fused) in text
