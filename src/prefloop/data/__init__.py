"""Feedback records and their loading, saving and validation."""

from prefloop.data.errors import FeedbackFormatError
from prefloop.data.io import iter_records, load_records, save_records
from prefloop.data.pairs import comparisons_to_unpaired, ratings_to_pairs
from prefloop.data.records import Comparison, Critique, FeedbackRecord, Rating, Unpaired

__all__ = [
    "Comparison",
    "Critique",
    "FeedbackFormatError",
    "FeedbackRecord",
    "Rating",
    "Unpaired",
    "comparisons_to_unpaired",
    "iter_records",
    "load_records",
    "ratings_to_pairs",
    "save_records",
]
