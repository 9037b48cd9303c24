"""The step-cost benchmark's measurements, and the claim it checks.

A CaAdam step compiles to the same program as an ``optax.adam`` step.
"""

import json
import math
from typing import cast

import jax
import optax
import pytest

import caadam_jax
from benchmarks import compile_constants
from benchmarks import step_cost

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]

HAND_HLO = """HloModule m

%fused_computation (param_0: f32[4]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  %constant.1 = f32[] constant(-0.001)
  %broadcast.1 = f32[4]{0} broadcast(%constant.1), dimensions={}
  ROOT %multiply.1 = f32[4]{0} multiply(%param_0, %broadcast.1), metadata={op_name="a"}
}

%fused_computation.1 (param_0.1: f32[4]) -> f32[4] {
  %param_0.1 = f32[4]{0} parameter(0)
  %constant.2 = f32[] constant(-0.001)
  %broadcast.2 = f32[4]{0} broadcast(%constant.2), dimensions={}
  ROOT %multiply.2 = f32[4]{0} multiply(%param_0.1, %broadcast.2), metadata={op_name="b"}
}

%fused_computation.2 (param_0.2: f32[4]) -> f32[4] {
  %param_0.2 = f32[4]{0} parameter(0)
  %constant.3 = f32[] constant(-0.002)
  %broadcast.3 = f32[4]{0} broadcast(%constant.3), dimensions={}
  ROOT %multiply.3 = f32[4]{0} multiply(%param_0.2, %broadcast.3)
}

ENTRY %main (p0: f32[4], p1: f32[2,3]) -> (f32[4], f32[4], f32[4], f32[2,3]) {
  %p0 = f32[4]{0} parameter(0)
  %p1 = f32[2,3]{1,0} parameter(1)
  %fusion = f32[4]{0} fusion(%p0), kind=kLoop, calls=%fused_computation
  %fusion.1 = f32[4]{0} fusion(%p0), kind=kLoop, calls=%fused_computation.1
  %fusion.2 = f32[4]{0} fusion(%p0), kind=kLoop, calls=%fused_computation.2
  %copy = f32[2,3]{1,0} copy(%p1)
  ROOT %tuple = (f32[4]{0}, f32[4]{0}, f32[4]{0}, f32[2,3]{1,0}) tuple(%fusion, %fusion.1, %fusion.2, %copy)
}
"""


def test_hlo_summary_counts_kernels_and_bytes_by_hand():
  summary = step_cost.hlo_summary(HAND_HLO)
  # Three fusions and a copy; parameters and the tuple are free.
  assert summary["kernels"] == 4
  assert summary["kernels_by_op"] == {"fusion": 3, "copy": 1}
  # Each fusion reads 16 bytes and writes 16; the copy reads 24 and writes 24.
  assert summary["hlo_bytes_moved"] == 3 * 32 + 48


def test_distinct_fusions_ignores_names_and_metadata_but_not_constants():
  # The first two bodies differ only in names and metadata; the third has another constant.
  assert compile_constants.distinct_fusions(HAND_HLO) == 2


def test_sizes_and_trees():
  assert step_cost.parse_size("64K") == 65536
  assert step_cost.parse_size("16M") == 16 * 2**20
  assert step_cost.parse_size("1000") == 1000
  large = step_cost.materialize(step_cost.large_tree_shapes(2**20), 0)
  assert len(jax.tree.leaves(large)) == 8
  assert abs(step_cost.tree_size(large) - 2**20) / 2**20 < 0.01
  many = step_cost.materialize(step_cost.many_tree_shapes(2**20, 100), 0)
  assert len(jax.tree.leaves(many)) == 200
  assert abs(step_cost.tree_size(many) - 2**20) / 2**20 < 0.01
  assert step_cost.tree_bytes(many) == 4 * step_cost.tree_size(many)


@pytest.mark.parametrize("layout", ["large", "many"])
def test_caadam_step_compiles_to_adams_program(layout):
  """Adam's kernels and bytes, plus the scalar factors' cond; the same state bytes.

  Distinct factors enter as runtime scalars out of one lax.cond on an element of the
  first update (caadam_jax._transforms.apply_factors): a few scalar kernels more, and
  the bytes of that first leaf's operands counted once more by the HLO summary (one
  element is computed).
  """
  shapes = (
      step_cost.large_tree_shapes(2**16)
      if layout == "large"
      else step_cost.many_tree_shapes(2**16, 12)
  )
  params, grads = step_cost.materialize(shapes, 0), step_cost.materialize(shapes, 1)

  def compiled_summary(tx):
    state = tx.init(params)
    compiled, _, _ = step_cost.compile_step(tx, params, state, grads)
    text = compiled.as_text()
    assert text is not None
    return step_cost.hlo_summary(text), step_cost.tree_bytes(state)

  adam_summary, adam_state_bytes = compiled_summary(optax.adam(1e-3))
  # Every layer but the last has a factor != 1 under each strategy, so a missed fold would show.
  for strategy in ("additive", "multiplicative", "depth"):
    factors = caadam_jax.describe(caadam_jax.infer_structure(params), strategy=strategy, show=False)
    # No stacked leaves here: every factor is a float, not a tuple per slice.
    assert sum(abs(cast(float, row.factor) - 1.0) > 1e-3 for row in factors) >= 2
    summary, state_bytes = compiled_summary(
        caadam_jax.caadam(1e-3, strategy=strategy, structure=caadam_jax.infer_structure(params))
    )
    assert state_bytes == adam_state_bytes, strategy
    assert 0 <= summary["kernels"] - adam_summary["kernels"] <= 4, strategy
    assert 1 <= summary["hlo_bytes_moved"] / adam_summary["hlo_bytes_moved"] <= 1.01, strategy
  _, keras_state_bytes = compiled_summary(caadam_jax.published.keras_caadam(1e-3))
  assert keras_state_bytes == adam_state_bytes


def test_missed_targets_name_the_a_a_control():
  """A miss is printed beside the ratio of two identical programs (adam vs adam-control)."""

  def run(ratio, compile_ratio, times, state_bytes=8):
    return {
        "ratio_paired_median": ratio,
        "compile_ratio": compile_ratio,
        "times_ms": times,
        "state_bytes": state_bytes,
        "state_bytes_equal_adam": state_bytes == 8,
    }

  case = {
      "layout": "large",
      "n_params": 2**20,
      "optimizers": {
          "adam": run(1.0, 1.0, [1.0, 1.0, 1.0]),
          "adam-control": run(1.07, 1.1, [1.07, 1.07, 1.07]),
          "caadam-depth": run(1.04, 1.3, [1.04, 1.04, 1.04]),
          "caadam-additive": run(1.0, 1.0, [1.0, 1.0, 1.0]),
          "adamw": run(1.0, 1.0, [2.0, 2.0, 2.0]),
          # 2.2 / 2.0 per round: 1.10 > 1.05.
          "adamw_layer_decay": run(1.1, 1.0, [2.2, 2.2, 2.2]),
      },
  }
  assert step_cost.check_targets([case]) == [
      "large 1.00M adamw_layer_decay: step ratio to adamw 1.100 > 1.05 (A/A control: 1.070)",
      "large 1.00M caadam-depth: step ratio 1.040 > 1.03 (A/A control: 1.070)",
      "large 1.00M caadam-depth: compile ratio 1.300 > 1.2 (A/A control: 1.100)",
  ]
  del case["optimizers"]["adam-control"]
  assert step_cost.check_targets([case])[1] == "large 1.00M caadam-depth: step ratio 1.040 > 1.03"


def test_quick_run_writes_json_and_merges(tmp_path, capsys):
  out = tmp_path / "run.json"
  assert (
      step_cost.main(
          [
              "--quick",
              "--sizes",
              "16K",
              "--layouts",
              "large",
              "--reps",
              "2",
              "--optimizers",
              "caadam-depth,adas",
              "--out",
              str(out),
          ]
      )
      == 0
  )
  run = json.loads(out.read_text())
  assert run["complete"] is True
  (case,) = run["cases"]
  assert case["layout"] == "large" and case["n_leaves"] == 8
  assert set(case["optimizers"]) == {"adam", "caadam-depth", "adas"}
  depth = case["optimizers"]["caadam-depth"]
  assert depth["state_bytes_equal_adam"] and depth["state_bytes"] == 2 * case["param_bytes"] + 4
  assert len(depth["times_ms"]) == 2 and depth["median_ms"] > 0
  assert case["optimizers"]["adam"]["ratio_paired_median"] == 1.0
  assert "targets (caadam strategies" in capsys.readouterr().out

  merged = tmp_path / "merged.json"
  assert step_cost.main(["--merge", str(out), str(out), "--out", str(merged)]) == 0
  both = json.loads(merged.read_text())
  assert len(both["cases"]) == 2 and len(both["merged_from"]) == 2
  assert both["command"].count("--quick") == 2


def test_distinct_constants_are_what_costs_compile_time():
  results = compile_constants.measure(layers=12, rows=16, cols=8, reps=1)
  adam = results["adam"]
  # A shared constant or equal factors add no distinct kernel. Distinct per-layer
  # constants as literals (a per-layer learning rate, factors behind a barrier) add one
  # per layer; depth's 11 distinct factors, runtime scalars (apply_factors: 12 layers
  # are over MAX_KERNELS_FROM_LITERALS), add a few fixed ones (the last layer's
  # unscaled kernels, the cond's predicate), not one each.
  assert results["adam*1.5"]["distinct_fusions"] == adam["distinct_fusions"]
  assert results["caadam-additive"]["distinct_fusions"] == adam["distinct_fusions"]
  assert results["caadam-depth+barrier"]["distinct_fusions"] >= adam["distinct_fusions"] + 5
  assert results["per-layer-lr"]["distinct_fusions"] >= adam["distinct_fusions"] + 5
  assert (
      results["caadam-depth"]["distinct_fusions"]
      < results["caadam-depth+barrier"]["distinct_fusions"]
  )
  assert 0 <= results["caadam-depth"]["kernels"] - adam["kernels"] <= 4  # the factors' cond


def test_factor_cost_times_the_library_path_against_its_two_controls(capsys):
  """The per-factor cost report: the library's apply_factors, one shared scalar, literals."""
  # 20 distinct factors on equal leaves: above MAX_KERNELS_FROM_LITERALS, so the library's
  # path is its lax.cond, which factor_cost checks against the literals, exactly.
  results = compile_constants.factor_cost(leaves=20, reps=1, calls=3)
  assert list(results) == ["shared", "apply_factors", "literals"]
  assert results["shared"]["per_factor_us"] == 0.0  # measured against itself
  for r in results.values():
    assert r["compile_s"] > 0 and r["call_s"] > 0 and math.isfinite(r["per_factor_us"])
  assert compile_constants.main(["--factor-cost", "3", "--steps", "2"]) == 0
  out = capsys.readouterr().out
  assert "3 arrays of 16x16" in out and "apply_factors" in out and "literals" in out


def test_train_step_report_has_its_controls_and_refuses_odd_reps():
  """Every optimizer has its baseline and the two controls; compile order needs even reps."""
  loss, params, batch = compile_constants.train_models([3], [])["mlp-3"]
  structure = caadam_jax.trace_structure(loss, params, batch)
  table = compile_constants.train_optimizers(structure, params)
  leaves = lambda name: len(jax.tree.leaves(table[name][0]().init(params)))  # noqa: E731
  # adam-carry carries as many scalars as caadam-depth-state holds factors (2 of 3
  # layers have a factor other than 1).
  assert leaves("adam-carry") == leaves("caadam-depth-state") == leaves("adam") + 2
  only = {"adam-again", "adam-carry", "caadam-depth", "adamw-layer-decay"}
  results = compile_constants.measure_train_step(
      loss, params, batch, reps=2, steps=2, only=only, log=lambda _: None, donate=True
  )
  assert set(results) == only | {"adam", "adamw"}  # each with its baseline
  assert {n: r["baseline"] for n, r in results.items()} == {
      "adam": "adam",
      "adam-again": "adam",
      "adam-carry": "adam",
      "caadam-depth": "adam",
      "adamw": "adamw",
      "adamw-layer-decay": "adamw",
  }
  assert results["adam-again"]["distinct_fusions"] == results["adam"]["distinct_fusions"]
  for base in ("adam", "adamw"):
    assert results[base]["step_ratio"] == 1.0 and results[base]["compile_ratio"] == 1.0
  assert all(r["step_s"] > 0 and math.isfinite(r["step_ratio"]) for r in results.values())
  for r in results.values():  # one ratio per compile round; its t interval holds the mean
    low, high = r["step_ratio_interval"]
    assert len(r["step_ratio_per_compile"]) == 2
    assert r["step_ratio_mean"] == pytest.approx(sum(r["step_ratio_per_compile"]) / 2)
    assert low <= r["step_ratio_mean"] <= high
  for base in ("adam", "adamw"):
    assert results[base]["step_ratio_per_compile"] == [1.0, 1.0]
  with pytest.raises(ValueError, match="reps must be even"):
    compile_constants.measure_train_step(loss, params, batch, reps=3, steps=1)
  with pytest.raises(SystemExit):
    compile_constants.main(["--layers", "3", "--models=", "--reps", "1"])
  with pytest.raises(SystemExit):  # no model at all
    compile_constants.main(["--layers=", "--models="])


def test_machine_info_records_xla_flags_only_when_set(monkeypatch):
  """Compiler options change what a benchmark measures: the results file says which."""
  from benchmarks import _shared

  monkeypatch.delenv("XLA_FLAGS", raising=False)
  assert "xla_flags" not in _shared.machine_info()
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
  assert _shared.machine_info()["xla_flags"] == (
      "--xla_cpu_enable_concurrency_optimized_scheduler=false"
  )


def test_round_robin_threads_each_steps_output_and_order_check_pairs_with_the_first():
  """Each executable's output feeds its next step; the first copy's ratio to itself is 1."""
  calls: list[int] = []

  def counter(k):
    def step(count, batch):  # live state is a tuple: (count,)
      calls.append(k)
      return (count + batch,)

    return step

  executables = [[counter(0), (0,)], [counter(1), (10,)]]
  times = compile_constants._round_robin(executables, 1, steps=3)
  assert [len(t) for t in times] == [3, 3]
  assert [live for _, live in executables] == [(3,), (13,)]  # three steps each, threaded
  assert calls == [0, 1, 1, 0, 0, 1]  # the first one rotates
  ratios = compile_constants.order_check(layers=3, copies=2, steps=4)
  assert len(ratios) == 2 and ratios[0] == 1.0 and 0 < ratios[1] < math.inf


def test_resnet_layout_is_the_cifar_reference():
  """The ``resnet`` case: ResNet-20 without conv biases, with normalized projection shortcuts."""
  shapes = jax.tree.leaves(step_cost.resnet_shapes(), is_leaf=lambda x: isinstance(x, tuple))
  # 3x3 convs: stem 3->16, stage widths 16/32/64 (6 convs each, the first of stages 2 and 3
  # widening), 1x1 projections 16->32 and 32->64; no conv bias.
  convs = 9 * (3 * 16 + 6 * 16 * 16 + 16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64 * 64)
  convs += 16 * 32 + 32 * 64
  norms = 2 * (16 + 6 * 16 + 7 * 32 + 7 * 64)  # scale and bias of 21 BatchNorms
  dense = 64 * 10 + 10
  assert sum(math.prod(s) for s in shapes) == convs + norms + dense == 272_474
  assert len(shapes) == 21 + 2 * 21 + 2
