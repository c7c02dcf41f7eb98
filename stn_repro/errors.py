"""Mistakes a user can fix, and warnings: one line each on stderr."""

import sys


class UserError(Exception):
    """Raised before any training starts; the CLI prints the message alone and exits with 2."""


def warn(message: str) -> None:
    """One line on stderr that does not stop the run."""
    print(f"stn-repro: warning: {message}", file=sys.stderr)
