"""Errors that the command line reports as one line with a non-zero exit."""
from __future__ import annotations

from typing import Any

__all__ = ["UserError", "ConfigError"]


class UserError(ValueError):
    """Bad input from the user (missing data, unknown name, a conflicting output directory, ...)."""


class ConfigError(ValueError):
    """A configuration field out of range, raised by a config dataclass.

    It carries the field's name, what the field must be and the value, so that a command line can name
    its own option for the field (:meth:`for_option`) instead of reading the message.

    Args:
        owner: the config class, for the message.
        field: the field's name.
        requirement: what the value must be, completing "``field`` must be ...".
        value: the offending value.
    """

    def __init__(self, owner: str, field: str, requirement: str, value: Any) -> None:
        self.owner, self.field, self.requirement, self.value = owner, field, requirement, value
        super().__init__(f"{owner}: {field} must be {requirement}, got {value!r}")

    def for_option(self, option: str) -> UserError:
        """The same complaint about the command-line ``option`` that set the field."""
        return UserError(f"{option} must be {self.requirement}, got {self.value!r}")
