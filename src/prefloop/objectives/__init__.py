"""Pure loss functions for direct alignment and reward modelling.

Pairwise objectives are reached by name through :func:`pairwise_loss`; see ``docs/objectives.md``.
"""

from prefloop.objectives.auxiliary import degree_variants, preference_degree_loss
from prefloop.objectives.kto import kto_loss
from prefloop.objectives.likelihood import response_nll
from prefloop.objectives.pairwise import (
    COMMON_OPTIONS,
    OBJECTIVES,
    Objective,
    default_options,
    get_objective,
    objective_names,
    pairwise_loss,
    requires_reference,
)
from prefloop.objectives.reward import (
    COMBINE_METHODS,
    bradley_terry_loss,
    combine_rewards,
    gaussian_kl,
    regression_loss,
    vpl_loss,
)
from prefloop.objectives.token_level import token_rewards

__all__ = [
    "COMBINE_METHODS",
    "COMMON_OPTIONS",
    "OBJECTIVES",
    "Objective",
    "bradley_terry_loss",
    "combine_rewards",
    "default_options",
    "gaussian_kl",
    "degree_variants",
    "get_objective",
    "kto_loss",
    "objective_names",
    "pairwise_loss",
    "preference_degree_loss",
    "regression_loss",
    "requires_reference",
    "response_nll",
    "token_rewards",
    "vpl_loss",
]
