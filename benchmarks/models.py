"""The Flax models of the training benchmarks (Keras defaults: Glorot-uniform kernels, zero biases).

* :class:`MLP`: the published California Housing MLPs and the MNIST MLP;
* :class:`SmallCNN`: a CPU-sized Fashion-MNIST CNN built from :class:`PatchConv`;
* :class:`ResNet20`: the published ResNet-20 (and, with its layout switches, the CIFAR
  reference layout that ``benchmarks.step_cost`` times);
* :class:`ModelSpec`: a module with the ``(params, extra)`` interface of the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import caadam_jax

GLOROT = nn.initializers.glorot_uniform()


class MLP(nn.Module):
  """``in -> hidden (ReLU) -> out``; layers ``Dense_0 .. Dense_k`` in forward order."""

  hidden: tuple[int, ...]
  out: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.reshape(x.shape[0], -1)
    for i, h in enumerate(self.hidden):
      x = nn.relu(nn.Dense(h, kernel_init=GLOROT, name=f"Dense_{i}")(x))
    return nn.Dense(self.out, kernel_init=GLOROT, name=f"Dense_{len(self.hidden)}")(x)


class PatchConv(nn.Module):
  """A 3x3 convolution with stride 2 and SAME padding computed as patches @ kernel.

  Same parameters (``kernel`` of shape ``(3, 3, in, out)``, ``bias``), same
  initialization and same outputs as ``nn.Conv(out, (3, 3), strides=2,
  padding="SAME")``, but built from slices and one matmul: under ``vmap`` over
  seeds a convolution with batched kernels becomes a grouped convolution, which
  XLA's CPU backend runs about 10x slower than the equivalent batched matmul.
  """

  features: int
  kernel_init: Any = GLOROT

  @nn.compact
  def __call__(self, x):
    k, s = 3, 2
    cin = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    h, w = x.shape[1], x.shape[2]
    oh, ow = -(-h // s), -(-w // s)
    pad_h, pad_w = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    x = jnp.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    patches = jnp.concatenate(
        [
            x[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ],
        axis=-1,
    )
    return patches @ kernel.reshape(k * k * cin, self.features) + bias


class SmallCNN(nn.Module):
  """28x28x1 -> conv 3x3/2 16 -> conv 3x3/2 32 -> dense 10 (ReLU)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x[..., None] if x.ndim == 3 else x
    x = nn.relu(PatchConv(16, name="L0_conv")(x))
    x = nn.relu(PatchConv(32, name="L1_conv")(x))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(10, kernel_init=GLOROT, name="L2_dense")(x)


class ResNet20(nn.Module):
  """ResNet-20 (He et al. 2016, CIFAR variant, v1) on 56x56x3 upscaled inputs.

  28x28 grey images are resized bilinearly to 56x56 and repeated to 3 channels
  inside the model (as the published Fashion-MNIST experiment fed ResNet-20).
  conv 3x3 16 -> 3 stages x 3 basic blocks (16, 32, 64 filters; stride 2 at the
  start of stages 2 and 3, 1x1 projection shortcuts there) -> global average
  pool -> dense. BatchNorm with Keras defaults (momentum 0.99, epsilon 1e-3),
  He-normal kernels (as the Keras ResNet example). Modules are named
  ``L00_conv``, ``L01_bn``, ... in creation (forward) order so that the natural
  path order used by ``caadam_jax`` for depths and by ``keras_caadam`` for the
  Keras variable order is the forward order.

  Attributes:
    num_classes: outputs of the classifier.
    size: inputs of another height are resized to ``size x size``.
    conv_bias: convolutions with a bias (Keras's ``Conv2D`` default); False gives the
      CIFAR reference layout, where the following BatchNorm makes a bias redundant.
    shortcut_norm: a BatchNorm after each 1x1 projection shortcut (the CIFAR
      reference layout; the Keras example has none).
  """

  num_classes: int = 10
  size: int = 56
  conv_bias: bool = True
  shortcut_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x[..., None] if x.ndim == 3 else x
    if x.shape[1] != self.size:
      x = jax.image.resize(x, (x.shape[0], self.size, self.size, x.shape[-1]), "bilinear")
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    counter = [0]

    def name(kind):
      n = f"L{counter[0]:02d}_{kind}"
      counter[0] += 1
      return n

    def conv(y, filters, kernel=3, strides=1):
      return nn.Conv(
          filters,
          (kernel, kernel),
          strides=strides,
          padding="SAME",
          use_bias=self.conv_bias,
          kernel_init=nn.initializers.he_normal(),
          name=name("conv"),
      )(y)

    def bn(y):
      return nn.BatchNorm(
          use_running_average=not train, momentum=0.99, epsilon=1e-3, name=name("bn")
      )(y)

    x = nn.relu(bn(conv(x, 16)))
    for stage, filters in enumerate((16, 32, 64)):
      for block in range(3):
        strides = 2 if stage > 0 and block == 0 else 1
        y = nn.relu(bn(conv(x, filters, strides=strides)))
        y = bn(conv(y, filters))
        if strides != 1 or x.shape[-1] != filters:
          x = conv(x, filters, kernel=1, strides=strides)
          if self.shortcut_norm:
            x = bn(x)
        x = nn.relu(x + y)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=GLOROT, name=name("dense"))(x)


@dataclasses.dataclass
class ModelSpec:
  """A flax module with the (params, extra) interface the trainer uses.

  Attributes:
    name: the config name results are stored under (e.g. ``"[64,32]"``).
    module: the Flax linen module.
    input_shape: the shape of one example (without the batch axis).
  """

  name: str
  module: nn.Module
  input_shape: tuple[int, ...]

  def init(self, key):
    variables = self.module.init(key, jnp.zeros((2,) + self.input_shape, jnp.float32), train=False)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    return params, extra

  def structure(self) -> caadam_jax.Structure:
    """Its layers in forward order, for the as-described CaAdam cells.

    The benchmark models name their layers in forward order (``Dense_0``, ``L0_conv``,
    ``L00_conv``, ...), the order Keras creates them in, so the sorted paths are that
    order; ``infer_structure`` says so, where ``caadam``'s default refuses to read a
    depth order from names like ``L0_conv``.
    """
    return caadam_jax.infer_structure(self.init(jax.random.key(0))[0])

  def apply(self, params, extra, x, train: bool):
    variables = {"params": params, **extra}
    if train and extra:
      out, mutated = self.module.apply(variables, x, train=True, mutable=list(extra))
      return out, dict(mutated)
    return self.module.apply(variables, x, train=train), extra


def count_params(tree) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))
