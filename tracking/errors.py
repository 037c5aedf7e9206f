"""Errors the tracking layer raises; their messages are safe to show to a user or moderator."""


class TrackingError(Exception):
    """Base class: the message is specific and contains no secrets or internals."""


class InvalidInput(TrackingError):
    """A value was rejected before reaching the database; nothing was written."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class InvalidTransition(TrackingError):
    """The database refused a status change (e.g. completed -> pending)."""


class RequestNotFound(TrackingError):
    """No video request has that id."""
