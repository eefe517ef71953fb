"""The errors a user's mistake or a failed run raises, and the set the CLI reports briefly.

Usage and data errors (bad settings, malformed records, a path that is not a model directory,
records of the wrong kind) are ``ValueError``s; a run directory that holds another run and a
diverged run have their own types. The command line prints any of them as one short message
with a non-zero exit instead of a traceback (``--debug`` shows it).
"""

from __future__ import annotations


class RunDirectoryError(RuntimeError):
    """``out_dir`` holds another run (fresh start) or a run with other settings (resume)."""


class TrainingDivergedError(RuntimeError):
    """The loss or gradient became NaN/inf; the last good checkpoint is left untouched."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    RunDirectoryError,
    TrainingDivergedError,
)
