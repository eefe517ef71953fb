"""Feedback records and their loading, saving and validation."""

from prefloop.data.records import Comparison, Critique, FeedbackRecord, Rating, Unpaired

__all__ = ["Comparison", "Critique", "FeedbackRecord", "Rating", "Unpaired"]
