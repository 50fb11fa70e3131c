"""Exceptions of the native client: the status code and the server's own message, in both dialects."""

from __future__ import annotations


class InfernoClientError(Exception):
    """Base class of every client error."""

    def __init__(self, message: str, status_code: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class APIStatusError(InfernoClientError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ServerBusyError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class APIConnectionError(InfernoClientError):
    """No answer at all: the server is not running, or not at that address."""


class APITimeoutError(APIConnectionError):
    pass


class StreamError(APIStatusError):
    """An error the server sent after a stream had begun (the status line was already 200)."""


def status_error(status: int, message: str, body: object = None) -> APIStatusError:
    cls: type[APIStatusError] = {400: BadRequestError, 401: AuthenticationError, 403: AuthenticationError,
                                 404: NotFoundError, 413: BadRequestError, 422: BadRequestError,
                                 503: ServerBusyError}.get(status, InternalServerError if status >= 500
                                                           else APIStatusError)
    return cls(message, status, body)
