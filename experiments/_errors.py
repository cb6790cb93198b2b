"""The one error type of experiments/: every bad config, flag or file raises it.

The command-line tools turn it (and :class:`theory.DataError`, :class:`theory.SpecError`) into a
single ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations


class ExperimentError(ValueError):
    """A sweep, data file or flag that cannot be used; the message is one line for the user."""
