"""Small versions of the architectures people train, for the real-model tests and docs.

Each model keeps the layout of its public original (Flax's imagenet ResNet, lm1b
TransformerLM, wmt encoder-decoder, vision_transformer's ViT and Mixer, Flax's
NNX scan-over-layers example, a Gemma-style NNX block, Equinox's CNN and ViT
tutorials) with tiny widths, so that connection counts and depths can be derived
by hand in the tests. Equinox models are in ``equinox_zoo`` below (imported
lazily: equinox is an optional dependency).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

# ---------------------------------------------------------------- linen ResNet
# conv_init -> bn_init -> ResNetBlock_0 (4 -> 4) -> ResNetBlock_1 (4 -> 8, stride 2,
# projection shortcut conv_proj/norm_proj) -> mean -> Dense_0 (the classifier).


class ResNetBlock(nn.Module):
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, axis_name="batch"
    )
    residual = x
    y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.filters, (3, 3), use_bias=False)(y)
    y = norm()(y)
    if residual.shape != y.shape:
      residual = nn.Conv(self.filters, (1, 1), self.strides, use_bias=False, name="conv_proj")(x)
      residual = norm(name="norm_proj")(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), use_bias=False, name="conv_init")(x)
    x = nn.BatchNorm(use_running_average=not train, axis_name="batch", name="bn_init")(x)
    x = ResNetBlock(4)(nn.relu(x), train)
    x = ResNetBlock(8, strides=2)(x, train)
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


RESNET_INPUT = jnp.ones((2, 8, 8, 3))

# ------------------------------------------------- linen pre-LN Transformer LM
# embed (tied with the logits) + pos_embedding -> block_i: ln_attn, attn (query,
# key, value, out), ln_mlp, mlp_in, mlp_out -> ln_final -> embed.attend.


class LMBlock(nn.Module):
  d: int
  heads: int
  fused_qkv: bool = False

  @nn.compact
  def __call__(self, x):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    h = nn.LayerNorm(name="ln_attn")(x)
    if self.fused_qkv:  # GPT-2's c_attn: one (d, 3d) projection for q, k and v
      qkv = nn.Dense(3 * self.d, name="qkv")(h).reshape(*h.shape[:2], 3 * self.heads, -1)
      q, k, v = jnp.split(qkv, 3, axis=-2)
      y = nn.dot_product_attention(q, k, v, mask=mask).reshape(h.shape)
      x = x + nn.Dense(self.d, name="attn_out")(y)
    else:
      x = x + nn.MultiHeadDotProductAttention(self.heads, name="attn")(h, mask=mask)
    h = nn.Dense(4 * self.d, name="mlp_in")(nn.LayerNorm(name="ln_mlp")(x))
    return x + nn.Dense(self.d, name="mlp_out")(nn.gelu(h))


class TransformerLM(nn.Module):
  vocab: int = 32
  d: int = 8
  heads: int = 2
  num_layers: int = 2
  max_len: int = 6
  fused_qkv: bool = False

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(self.vocab, self.d, name="embed")
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, self.max_len, self.d))
    x = embed(tokens) + pos[:, : tokens.shape[1]]
    for i in range(self.num_layers):
      x = LMBlock(self.d, self.heads, self.fused_qkv, name=f"block_{i}")(x)
    return embed.attend(nn.LayerNorm(name="ln_final")(x))


LM_INPUT = jnp.zeros((2, 6), jnp.int32)

# ---------------------------------------- linen encoder-decoder, cross-attention
# "decoder" sorts before "encoder": path order puts the decoder first.


class EncoderDecoder(nn.Module):
  vocab: int = 16
  d: int = 8

  @nn.compact
  def __call__(self, src, tgt):
    enc = nn.Embed(self.vocab, self.d, name="src_embed")(src)
    enc = enc + nn.SelfAttention(2, name="encoder_attn")(enc)
    enc = enc + nn.Dense(self.d, name="encoder_mlp")(enc)
    dec = nn.Embed(self.vocab, self.d, name="tgt_embed")(tgt)
    dec = dec + nn.SelfAttention(2, name="decoder_self")(dec)
    dec = dec + nn.MultiHeadDotProductAttention(2, name="decoder_cross")(dec, enc)
    dec = dec + nn.Dense(self.d, name="decoder_mlp")(dec)
    return nn.Dense(self.vocab, name="logits")(dec)


SRC, TGT = jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 4), jnp.int32)

# ---------------------------------------------- linen ViT (vision_transformer)


class MlpBlock(nn.Module):
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    y = nn.gelu(nn.Dense(self.mlp_dim)(x))
    return nn.Dense(x.shape[-1])(y)


class Encoder1DBlock(nn.Module):

  @nn.compact
  def __call__(self, x):
    y = nn.MultiHeadDotProductAttention(2)(nn.LayerNorm()(x))
    x = x + y
    return x + MlpBlock(16)(nn.LayerNorm()(x))


class AddPositionEmbs(nn.Module):

  @nn.compact
  def __call__(self, x):
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]))
    return x + pos


class ViT(nn.Module):
  hidden: int = 8

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(self.hidden, (4, 4), strides=(4, 4), padding="VALID", name="embedding")(images)
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
    x = jnp.concatenate([jnp.tile(cls, [n, 1, 1]), x], axis=1)
    x = AddPositionEmbs(name="Transformer_posembed_input")(x)
    x = Encoder1DBlock(name="Transformer_encoderblock_0")(x)
    x = nn.LayerNorm(name="Transformer_encoder_norm")(x)
    return nn.Dense(10, name="head")(x[:, 0])


IMAGES = jnp.ones((2, 8, 8, 3))

# ----------------------------------------------------------- linen MLP-Mixer


class MixerBlock(nn.Module):

  @nn.compact
  def __call__(self, x):
    y = jnp.swapaxes(nn.LayerNorm()(x), 1, 2)
    y = jnp.swapaxes(MlpBlock(6, name="token_mixing")(y), 1, 2)
    x = x + y
    return x + MlpBlock(16, name="channel_mixing")(nn.LayerNorm()(x))


class Mixer(nn.Module):

  @nn.compact
  def __call__(self, images):
    x = nn.Conv(8, (4, 4), strides=(4, 4), padding="VALID", name="stem")(images)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    x = MixerBlock()(x)
    x = nn.LayerNorm(name="pre_head_layer_norm")(x)
    return nn.Dense(10, name="head")(jnp.mean(x, axis=1))


# -------------------------------------------- NNX scan-over-layers (Flax example)


class ScanBlock(nnx.Module):

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(dim, dim, rngs=rngs)
    self.bn = nnx.BatchNorm(dim, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return jax.nn.gelu(self.dropout(self.bn(self.linear(x))))


class ScanMLP(nnx.Module):

  def __init__(self, dim: int, *, n_layers: int, rngs: nnx.Rngs):
    self.n_layers = n_layers

    @nnx.split_rngs(splits=n_layers)
    @nnx.vmap(axis_size=n_layers)
    def create_block(rngs: nnx.Rngs):
      return ScanBlock(dim, rngs=rngs)

    self.layers = create_block(rngs)

  def __call__(self, x):
    @nnx.scan
    def scan_fn(x, block):
      return block(x), None

    x, _ = scan_fn(x, self.layers)
    return x


# ------------------------------------ NNX Gemma-style block: fused QKV and GQA


class Einsum(nnx.Module):
  """Gemma's Einsum layer: one weight ``w``, applied with ``jnp.einsum``."""

  def __init__(self, shape, *, rngs: nnx.Rngs):
    self.w = nnx.Param(nnx.initializers.normal(0.1)(rngs.params(), shape))

  def __call__(self, equation, x):
    return jnp.einsum(equation, x, self.w[...])


class RMSNorm(nnx.Module):

  def __init__(self, dim, *, rngs: nnx.Rngs):
    del rngs
    self.scale = nnx.Param(jnp.zeros((dim,)))

  def __call__(self, x):
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(var + 1e-6) * (1 + self.scale[...])


class GemmaAttention(nnx.Module):

  def __init__(self, d, heads, kv_heads, head_dim, *, rngs):
    self.heads, self.kv_heads = heads, kv_heads
    if heads == kv_heads:  # multi-head attention: one fused q/k/v weight
      self.qkv_einsum = Einsum((3, heads, d, head_dim), rngs=rngs)
    else:  # grouped-query attention: q, and fused k/v with fewer heads
      self.q_einsum = Einsum((heads, d, head_dim), rngs=rngs)
      self.kv_einsum = Einsum((2, kv_heads, d, head_dim), rngs=rngs)
    self.attn_vec_einsum = Einsum((heads, head_dim, d), rngs=rngs)

  def __call__(self, x):
    if self.heads == self.kv_heads:
      q, k, v = self.qkv_einsum("BTD,SNDH->SBTNH", x)
    else:
      q = self.q_einsum("BTD,NDH->BTNH", x)
      k, v = self.kv_einsum("BSD,CKDH->CBSKH", x)
      k = jnp.repeat(k, self.heads // self.kv_heads, axis=-2)
      v = jnp.repeat(v, self.heads // self.kv_heads, axis=-2)
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k)
    probs = jax.nn.softmax(logits, axis=-1)
    return self.attn_vec_einsum("BTNH,NHD->BTD", jnp.einsum("BNTS,BSNH->BTNH", probs, v))


class GemmaLM(nnx.Module):
  """Embedder (tied with the logits), one pre-norm block, final norm."""

  def __init__(self, *, vocab=32, d=8, heads=4, kv_heads=4, head_dim=2, hidden=16, rngs):
    self.input_embedding = nnx.Param(nnx.initializers.normal(0.1)(rngs.params(), (vocab, d)))
    self.pre_attention_norm = RMSNorm(d, rngs=rngs)
    self.attn = GemmaAttention(d, heads, kv_heads, head_dim, rngs=rngs)
    self.pre_ffw_norm = RMSNorm(d, rngs=rngs)
    self.gating_einsum = Einsum((2, d, hidden), rngs=rngs)
    self.linear = Einsum((hidden, d), rngs=rngs)
    self.final_norm = RMSNorm(d, rngs=rngs)

  def __call__(self, tokens):
    x = self.input_embedding[tokens]
    x = x + self.attn(self.pre_attention_norm(x))
    gate, up = self.gating_einsum("BTD,CDH->CBTH", self.pre_ffw_norm(x))
    x = x + self.linear("BTH,HD->BTD", jax.nn.gelu(gate) * up)
    return self.final_norm(x) @ self.input_embedding[...].T


# ------------------------------------ one MLP in linen, NNX (and Equinox below)


class LinenMLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8)(x))
    x = nn.relu(nn.Dense(8)(x))
    return nn.Dense(2)(x)


class NnxMLP(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(4, 8, rngs=rngs)
    self.fc2 = nnx.Linear(8, 8, rngs=rngs)
    self.fc3 = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))


def equinox_zoo():
  """Equinox's MNIST CNN, a small Equinox ViT and MLP (equinox imported here).

  The classes are defined inside the function so that importing this module never
  imports equinox (an optional dependency); hence the long body.
  """
  import equinox as eqx

  class CNN(eqx.Module):
    layers: list

    def __init__(self, key):
      k1, k2, k3 = jax.random.split(key, 3)
      self.layers = [
          eqx.nn.Conv2d(1, 3, kernel_size=4, key=k1),
          eqx.nn.MaxPool2d(kernel_size=2),
          jax.nn.relu,
          jnp.ravel,
          eqx.nn.Linear(3 * 4 * 4, 16, key=k2),
          jax.nn.sigmoid,
          eqx.nn.Linear(16, 10, key=k3),
          jax.nn.log_softmax,
      ]

    def __call__(self, x):
      for layer in self.layers:
        x = layer(x)
      return x

  class AttentionBlock(eqx.Module):
    layer_norm1: eqx.nn.LayerNorm
    layer_norm2: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    linear1: eqx.nn.Linear
    linear2: eqx.nn.Linear

    def __init__(self, d, hidden, heads, key):
      k1, k2, k3 = jax.random.split(key, 3)
      self.layer_norm1 = eqx.nn.LayerNorm(d)
      self.layer_norm2 = eqx.nn.LayerNorm(d)
      self.attention = eqx.nn.MultiheadAttention(heads, d, key=k1)
      self.linear1 = eqx.nn.Linear(d, hidden, key=k2)
      self.linear2 = eqx.nn.Linear(hidden, d, key=k3)

    def __call__(self, x):
      y = jax.vmap(self.layer_norm1)(x)
      x = x + self.attention(y, y, y)
      y = jax.vmap(self.layer_norm2)(x)
      return x + jax.vmap(self.linear2)(jax.nn.gelu(jax.vmap(self.linear1)(y)))

  class VisionTransformer(eqx.Module):
    patch_embedding: eqx.nn.Linear
    positional_embedding: jax.Array
    cls_token: jax.Array
    attention_blocks: list
    mlp: eqx.nn.Sequential
    patch: int = eqx.field(static=True)

    def __init__(self, *, d=8, patch=4, channels=1, num_patches=4, key):
      k1, k2, k3, k4, k5 = jax.random.split(key, 5)
      self.patch = patch
      self.patch_embedding = eqx.nn.Linear(patch * patch * channels, d, key=k1)
      self.positional_embedding = jax.random.normal(k2, (num_patches + 1, d))
      self.cls_token = jax.random.normal(k3, (1, d))
      self.attention_blocks = [AttentionBlock(d, 16, 2, k4)]
      self.mlp = eqx.nn.Sequential([eqx.nn.LayerNorm(d), eqx.nn.Linear(d, 10, key=k5)])

    def __call__(self, x):  # (channels, height, width): one image, Equinox style
      c, h, w = x.shape
      p = self.patch
      patches = x.reshape(c, h // p, p, w // p, p).transpose(1, 3, 0, 2, 4)
      patches = patches.reshape((h // p) * (w // p), c * p * p)
      x = jax.vmap(self.patch_embedding)(patches)
      x = jnp.concatenate([self.cls_token, x], axis=0) + self.positional_embedding
      for block in self.attention_blocks:
        x = block(x)
      return self.mlp(x[0])

  return CNN, VisionTransformer, eqx
