"""caadam_jax: connection-aware Adam (CaAdam) and ADAS as Optax transformations."""

from typing import Any

from caadam_jax import _deprecation

# The published-results mode is a namespace, as optax.contrib: caadam_jax.published.<name>.
from caadam_jax import published
from caadam_jax._adas import ScaleByAdasState
from caadam_jax._adas import adas
from caadam_jax._adas import scale_by_adas
from caadam_jax._alias import caadam
from caadam_jax._describe import DescribeRow
from caadam_jax._describe import describe
from caadam_jax._factor_state import FactorsInStateState
from caadam_jax._factor_state import factors_in_state
from caadam_jax._formulas import STRATEGIES
from caadam_jax._formulas import STRATEGY_NAMES
from caadam_jax._formulas import Formula
from caadam_jax._formulas import LayerRecord
from caadam_jax._formulas import Statistics
from caadam_jax._formulas import Strategy
from caadam_jax._formulas import StrategyName
from caadam_jax._layer_decay import DEFAULT_STEM
from caadam_jax._layer_decay import LayerDecayRow
from caadam_jax._layer_decay import LayerIds
from caadam_jax._layer_decay import adamw_layer_decay
from caadam_jax._layer_decay import describe_layer_decay
from caadam_jax._layer_decay import layer_ids
from caadam_jax._layer_decay import scale_by_layer_decay
from caadam_jax._paths import path_to_str
from caadam_jax._structure import LeafInfo
from caadam_jax._structure import Structure
from caadam_jax._structure import infer_structure
from caadam_jax._trace import trace_structure
from caadam_jax._transforms import ScaleByStructureState
from caadam_jax._transforms import scale_by_connection_minmaxmedian
from caadam_jax._transforms import scale_by_depth
from caadam_jax._transforms import scale_by_strategy
from caadam_jax._transforms import scale_by_structure

__version__ = "0.1.0"

__all__ = (
    "DEFAULT_STEM",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "DescribeRow",
    "FactorsInStateState",
    "Formula",
    "LayerDecayRow",
    "LayerIds",
    "LayerRecord",
    "LeafInfo",
    "ScaleByAdasState",
    "ScaleByStructureState",
    "Statistics",
    "Strategy",
    "StrategyName",
    "Structure",
    "adamw_layer_decay",
    "adas",
    "caadam",
    "describe",
    "describe_layer_decay",
    "factors_in_state",
    "infer_structure",
    "layer_ids",
    "path_to_str",
    "scale_by_adas",
    "scale_by_connection_minmaxmedian",
    "scale_by_depth",
    "scale_by_layer_decay",
    "scale_by_strategy",
    "scale_by_structure",
    "trace_structure",
)

# Former top-level names of the published mode: they work for one release, with a warning.
_MOVED_TO_PUBLISHED = ("keras_caadam", "keras_caadam_factors")


def __getattr__(name: str) -> Any:
  if name in _MOVED_TO_PUBLISHED:
    return _deprecation.moved(f"caadam_jax.{name}", f"caadam_jax.published.{name}", published)
  raise AttributeError(f"module 'caadam_jax' has no attribute {name!r}")
