"""Errors that the command line reports as one line with a non-zero exit."""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user (missing data, unknown name, a conflicting output directory, ...)."""
