"""Adam basics with Optax: the classic Adam walkthrough, without hand-written optimizers.

The examples of a common Adam tutorial (linear regression, a breast-cancer
classifier, learning-rate decay, SGD vs RMSprop vs Adam on the Rosenbrock
function) redone with Optax, plus ADAS (``caadam_jax.adas``, a hypergradient
optimizer that learns its own step sizes) on Rosenbrock. Each part prints its
numbers; one PNG (``--out``) shows all the loss curves.

Notes on the tutorial's code, which Optax takes care of:

* Its formula writes ``theta -= lr * m_hat / sqrt(v_hat + eps)`` but its code (and
  ``optax.adam``) computes ``lr * m_hat / (sqrt(v_hat) + eps)``; Optax's
  ``eps_root`` is the inside-the-root form. Part 0 checks the NumPy update against
  ``optax.adam`` step by step.
* It reuses ONE Adam object for the weights and the bias, so both would share (and
  clobber) the same moment estimates. An Optax state is a pytree mirroring the
  parameters: every leaf has its own moments.
* Its decay ``lr * 0.95 ** (t / 1000)`` is ``optax.exponential_decay(lr, 1000, 0.95)``.

    python examples/adam_basics.py                       # a few seconds of compute
    python examples/adam_basics.py --iterations 5000 --out adam_basics.png

Needs the ``examples`` extra (scikit-learn bundles the breast-cancer data; no download).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping

import cli_types  # examples/cli_types.py: checked argparse types
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax


def numpy_adam_matches_optax(steps: int = 5) -> float:
  """Part 0: the tutorial's NumPy Adam update vs ``optax.adam``; returns the max difference."""
  lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
  rng = np.random.default_rng(0)
  theta = rng.normal(size=5)
  m = v = np.zeros_like(theta)
  tx = optax.adam(lr, b1, b2, eps)
  params = jnp.asarray(theta, dtype=jnp.float32)
  state = tx.init(params)
  for t in range(1, steps + 1):
    g = 2 * theta  # gradient of sum(theta**2)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    updates, state = tx.update(2 * params, state)
    params = jnp.asarray(optax.apply_updates(params, updates))
  return float(np.max(np.abs(np.asarray(params) - theta)))


def full_batch_training(tx: optax.GradientTransformation, params, loss_fn, epochs: int):
  """The Optax loop of parts 1-3: ``epochs`` full-batch steps; returns (params, per-step losses)."""

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state)
    return optax.apply_updates(params, updates), state, loss

  state, losses = tx.init(params), []
  for _ in range(epochs):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  return params, losses


def linear_regression(epochs: int, learning_rate: float):
  """Part 1: full-batch linear regression on ``make_regression`` data with ``optax.adam``."""
  from sklearn.datasets import make_regression
  from sklearn.preprocessing import StandardScaler

  x, y = make_regression(n_samples=1000, n_features=20, noise=0.1, random_state=42)[:2]
  x = jnp.asarray(StandardScaler().fit_transform(x), dtype=jnp.float32)
  y = jnp.asarray(y, dtype=jnp.float32)[:, None]
  params = {"w": 0.01 * jax.random.normal(jax.random.key(0), (20, 1)), "b": jnp.zeros((1,))}
  tx = optax.adam(learning_rate)  # one state, separate moments for w and b

  def loss_fn(params):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

  params, losses = full_batch_training(tx, params, loss_fn, epochs)
  return losses, float(loss_fn(params))


class Classifier(nn.Module):
  """The tutorial's 30 -> 16 -> 8 -> 1 network with sigmoid activations (logit output)."""

  @nn.compact
  def __call__(self, x):
    x = nn.sigmoid(nn.Dense(16)(x))
    x = nn.sigmoid(nn.Dense(8)(x))
    return nn.Dense(1)(x)[:, 0]


def breast_cancer(epochs: int, learning_rate: optax.ScalarOrSchedule):
  """Parts 2 and 3: the breast-cancer classifier, full batch, with a constant or scheduled lr."""
  from sklearn.datasets import load_breast_cancer
  from sklearn.metrics import roc_auc_score
  from sklearn.model_selection import train_test_split
  from sklearn.preprocessing import StandardScaler

  features, labels = load_breast_cancer(return_X_y=True)
  x_train, x_test, y_train, y_test = train_test_split(
      features, labels, test_size=0.2, random_state=42
  )
  scaler = StandardScaler().fit(x_train)  # fit on the training split only
  x_train, x_test = (jnp.asarray(scaler.transform(a), dtype=jnp.float32) for a in (x_train, x_test))
  y_train = jnp.asarray(y_train, dtype=jnp.float32)
  model = Classifier()
  params = model.init(jax.random.key(0), x_train[:1])["params"]
  tx = optax.adam(learning_rate)

  def loss_fn(params):
    logits = model.apply({"params": params}, x_train)
    return optax.sigmoid_binary_cross_entropy(logits, y_train).mean()

  params, losses = full_batch_training(tx, params, loss_fn, epochs)
  logits = jnp.asarray(model.apply({"params": params}, x_test))
  scores = np.asarray(jax.nn.sigmoid(logits))
  accuracy = float(np.mean((scores > 0.5) == y_test))
  return losses, accuracy, float(roc_auc_score(y_test, scores))


def rosenbrock(p):
  x, y = p[0], p[1]
  return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def rosenbrock_race(optimizers: Mapping[str, optax.GradientTransformation], iterations: int):
  """Part 4: every optimizer from (-1, 1) for ``iterations`` steps; loss and path per step."""
  runs = {}
  for name, tx in optimizers.items():

    def body(carry, _, tx=tx):
      params, state = carry
      grads = jax.grad(rosenbrock)(params)
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), (rosenbrock(params), params)

    start = jnp.array([-1.0, 1.0])

    def run(start, body=body, tx=tx):
      return jax.lax.scan(body, (start, tx.init(start)), length=iterations)

    _, (losses, path) = jax.jit(run)(start)
    runs[name] = (np.asarray(losses), np.asarray(path))
  return runs


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument(
      "--epochs", type=cli_types.positive_int, default=300, help="full-batch steps for parts 1-3"
  )
  parser.add_argument(
      "--iterations", type=cli_types.positive_int, default=2000, help="Rosenbrock steps (part 4)"
  )
  parser.add_argument(
      "--regression-lr", type=cli_types.positive_float, default=1.0, help="Adam lr of part 1"
  )
  parser.add_argument("--out", default="adam_basics.png", help="PNG of the loss curves")
  args = parser.parse_args(argv)
  results = {}

  diff = numpy_adam_matches_optax()
  print(f"0. tutorial NumPy Adam vs optax.adam over 5 steps: max |difference| {diff:.2e}")
  results["numpy_vs_optax"] = diff

  losses, final = linear_regression(args.epochs, learning_rate=args.regression_lr)
  print(
      f"1. linear regression (1000 x 20, noise 0.1), adam lr {args.regression_lr:g}: "
      f"MSE {losses[0]:.1f} -> {final:.4f} after {args.epochs} steps"
  )
  print(
      "   (Adam moves each weight by about lr per step whatever the gradient's scale: the true "
      "weights here are tens, so the tutorial's lr 1e-3 for 100 steps barely moves them)"
  )
  results["linear_regression"] = losses

  constant = breast_cancer(args.epochs, 1e-2)
  schedule = optax.exponential_decay(
      1e-2, transition_steps=max(1, args.epochs // 4), decay_rate=0.5
  )
  decayed = breast_cancer(args.epochs, schedule)
  print(
      f"2. breast cancer 30-16-8-1 (sigmoid), adam lr 1e-2: train loss {constant[0][-1]:.4f}, "
      f"test accuracy {constant[1]:.4f}, ROC AUC {constant[2]:.4f}"
  )
  print(
      f"3. same with exponential_decay(1e-2, {max(1, args.epochs // 4)}, 0.5) (lr at the end "
      f"{float(jnp.asarray(schedule(args.epochs))):.2e}): train loss {decayed[0][-1]:.4f}, "
      f"test accuracy {decayed[1]:.4f}, ROC AUC {decayed[2]:.4f}"
  )
  print(
      "   (the tutorial's decay lr * 0.95 ** (t / 1000) is optax.exponential_decay(lr, 1000, 0.95))"
  )
  results["breast_cancer"] = {"constant": constant, "decay": decayed}

  optimizers = {
      "sgd lr 1e-3": optax.sgd(1e-3),
      "rmsprop lr 1e-3": optax.rmsprop(1e-3),
      "adam lr 1e-3": optax.adam(1e-3),
      "adam lr 1e-2": optax.adam(1e-2),
      "adas (defaults)": caadam_jax.adas(),
  }
  runs = rosenbrock_race(optimizers, args.iterations)
  print(f"4. Rosenbrock from (-1, 1), {args.iterations} steps (minimum 0 at (1, 1)):")
  for name, (losses, path) in runs.items():
    print(
        f"   {name:<16} final loss {losses[-1]:.3e}  at ({path[-1, 0]:+.4f}, {path[-1, 1]:+.4f})  "
        f"best {losses.min():.3e} at step {int(np.argmin(losses)) + 1}"
    )
  results["rosenbrock"] = {name: losses for name, (losses, _) in runs.items()}

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  axes[0, 0].plot(results["linear_regression"])
  axes[0, 0].set(yscale="log", xlabel="step", ylabel="MSE", title="1. linear regression, adam")
  axes[0, 1].plot(constant[0], label="adam lr 1e-2")
  axes[0, 1].plot(decayed[0], label="adam, exponential decay")
  axes[0, 1].set(
      yscale="log", xlabel="step", ylabel="binary cross-entropy", title="2-3. breast cancer"
  )
  axes[0, 1].legend()
  for name, (losses, path) in runs.items():
    axes[1, 0].plot(np.arange(1, len(losses) + 1), losses, label=name)
    axes[1, 1].plot(path[:, 0], path[:, 1], label=name)
  axes[1, 0].set(
      yscale="log", xscale="log", xlabel="step", ylabel="f(x, y)", title="4. Rosenbrock loss"
  )
  axes[1, 0].legend(fontsize=8)
  grid_x, grid_y = np.meshgrid(np.linspace(-1.5, 1.5, 200), np.linspace(-0.5, 1.5, 200))
  axes[1, 1].contour(
      grid_x, grid_y, np.log1p(rosenbrock((grid_x, grid_y))), levels=20, colors="0.8"
  )
  axes[1, 1].plot([-1, 1], [1, 1], "k*", markersize=10)
  axes[1, 1].set(
      xlim=(-1.5, 1.5), ylim=(-0.5, 1.5), xlabel="x", ylabel="y", title="4. Rosenbrock paths"
  )
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  plt.close(fig)
  print(f"loss curves written to {out.resolve()}")
  return results


if __name__ == "__main__":
  main()
