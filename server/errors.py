"""The error hierarchy of the application.

Services raise these; the web edge maps ``status`` to an HTTP response with ``message`` shown to
the user, and the CLI prints ``message`` on one line and exits non-zero. Messages are written for
the person who caused them and never contain secrets.
"""

from __future__ import annotations


class SteelyardError(Exception):
    """Base class: a failure with a message fit for the user."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The form field at fault (its name), so a page can mark it (aria-invalid).
        self.field = field


class InvalidInput(SteelyardError):
    """The request was understood but a value is not acceptable."""

    status = 400


class NotSignedIn(SteelyardError):
    status = 401


class Forbidden(SteelyardError):
    status = 403


class NotFound(SteelyardError):
    """Missing, or not visible to this viewer: the two are indistinguishable on purpose."""

    status = 404


class Conflict(SteelyardError):
    status = 409


class TooManyRequests(SteelyardError):
    status = 429


class InstanceError(SteelyardError):
    """The instance folder is missing, unreadable or inconsistent."""

    status = 500
