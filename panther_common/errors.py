"""The user-facing error: the CLI prints its message on one line and exits non-zero, no stack trace."""

from __future__ import annotations


class PantherError(Exception):
    """Something the user can fix (bad file, unreachable service, wrong flag); the message says how."""

    exit_code = 2
