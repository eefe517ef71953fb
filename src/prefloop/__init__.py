"""prefloop: turn human and AI feedback into better models, measured on ground truth."""

__version__ = "0.1.0"
