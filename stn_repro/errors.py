"""The one exception type for mistakes a user can fix (bad override, missing or corrupt files)."""


class UserError(Exception):
    """Raised before any training starts; the CLI prints the message alone and exits with 2."""
