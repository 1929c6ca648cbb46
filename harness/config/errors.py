"""The user-error base class: a mistake in what a user gave, told in one line.

Every error a user can fix (a config key or value, a checkpoint, a dataset file, a folder another
command wrote) derives from `UserError`; the CLI catches this one class, prints its message and
exits with code 2. This module imports nothing else of the project.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input; the message is one line naming the bad value and what would be valid."""


class ConfigError(UserError):
    """A profile, override or value that does not fit the schema; the message is one line."""
