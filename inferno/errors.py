"""The host's error hierarchy. Dialects map these to their own wire shapes; the CLI to one red line."""

from __future__ import annotations


class InfernoError(Exception):
    """Base class: a failure that is the user's to fix or understand, never a bug."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequestError(InfernoError):
    status = 400
    code = "bad_request"


class ForbiddenError(InfernoError):
    """Allowed to the local user (the CLI) but not over the API unless the server's owner says so."""

    status = 403
    code = "forbidden"


class NotFoundError(InfernoError):
    status = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f'model "{name}" not found, try pulling it first', param="model")
        self.name = name


class AuthenticationError(InfernoError):
    status = 401
    code = "unauthorized"


class BusyError(InfernoError):
    status = 503
    code = "busy"

    def __init__(self, message: str = "server busy, please try again") -> None:
        super().__init__(message)


class UnavailableError(InfernoError):
    """A dependency (llama.cpp, a network, a plugin) is missing or not answering."""

    status = 503
    code = "unavailable"


class ModelLoadError(InfernoError):
    status = 500
    code = "load_failed"


class SourceError(InfernoError):
    """A model source could not fetch what was asked."""

    status = 400
    code = "source_error"
