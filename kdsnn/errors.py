"""User-facing errors.

Anything the user can fix (bad flag, missing file, shape mismatch) raises `KdsnnError`
with one line saying what was wrong, where, and what to do. The CLI prints it without a
traceback and exits non-zero. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations


class KdsnnError(Exception):
    """A problem in the user's input; the message is one line meant for people."""

    exit_code = 2


class ParityError(KdsnnError):
    """A rung of the parity ladder failed (docs/design.md, "The parity ladder"): the deployed net differs."""

    exit_code = 3
