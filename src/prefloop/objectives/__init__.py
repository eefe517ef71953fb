"""Pure loss functions for direct alignment and reward modelling."""

from prefloop.objectives.pairwise import OBJECTIVES, pairwise_loss

__all__ = ["OBJECTIVES", "pairwise_loss"]
