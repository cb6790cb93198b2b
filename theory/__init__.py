"""theory/: exact (sympy / rational) gradient-diversity bounds of linear and ReLU networks.

Thin re-exports; each concept lives in one private module. This package never imports jax.
"""

from ._spec import NetSpec, SpecError, ACTIVATIONS, ARCHS
from .data import Dataset, DataError
from ._diversity import (
    batch_size_bound, simple_noise_scale, unbiased_noise_scale, norm_test_theta2,
    minibatch_second_moment, predicted_max_batch, diversity,
)
from ._invariants import Invariants
from . import cli

__all__ = [
    "NetSpec", "SpecError", "ACTIVATIONS", "ARCHS", "Dataset", "DataError",
    "batch_size_bound", "simple_noise_scale", "unbiased_noise_scale", "norm_test_theta2",
    "minibatch_second_moment", "predicted_max_batch", "diversity", "Invariants", "cli",
]
from ._result import TheoryResult
from ._bounds import expected_moments
from ._budget import same_budget_alternatives, width_for_budget, budget_family
from ._registry import (
    Coverage, Family, FAMILIES, covers, family_of, RESIDUAL_LIMIT_ERROR, PAIR_CHAIN_PRECISION,
    PAIR_CHAIN_VALIDATED, RELU_MAX_DEPTH,
)

__all__ += ["TheoryResult", "expected_moments", "same_budget_alternatives", "width_for_budget",
            "budget_family", "Coverage", "Family", "FAMILIES", "covers", "family_of",
            "RESIDUAL_LIMIT_ERROR", "PAIR_CHAIN_PRECISION", "PAIR_CHAIN_VALIDATED",
            "RELU_MAX_DEPTH"]
