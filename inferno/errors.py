"""The host's error hierarchy. Dialects map these to their own wire shapes; the CLI to one red line."""

from __future__ import annotations


def _rebuilt(cls: type[InfernoError], message: str, state: dict[str, object]) -> InfernoError:
    error = cls.__new__(cls)
    InfernoError.__init__(error, message)
    error.__dict__.update(state)
    return error


class InfernoError(Exception):
    """Base class: a failure that is the user's to fix or understand, never a bug."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross from a model's runner process to the host pickled; subclasses whose __init__ takes other
        # arguments (ModelNotFoundError(name)) come back as they were, message and attributes included.
        return (_rebuilt, (type(self), self.message, dict(self.__dict__)))


class BadRequestError(InfernoError):
    status = 400
    code = "bad_request"


class ContextLengthError(BadRequestError):
    """The prompt does not fit the model's context window (OpenAI's code for it, which its clients look for)."""

    code = "context_length_exceeded"


class ForbiddenError(InfernoError):
    """Allowed to the local user (the CLI) but not over the API unless the server's owner says so."""

    status = 403
    code = "forbidden"


class NotFoundError(InfernoError):
    status = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    def __init__(self, name: str, hint: str | None = None) -> None:
        # the message starts as Ollama's does (clients match on it); a hint (where the model is) follows
        super().__init__(f'model "{name}" not found, try pulling it first' + (f" ({hint})" if hint else ""),
                         param="model")
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


class EngineStoppedError(InfernoError):
    """A model's runner process died (a native fault inside llama.cpp, a kill) while it held the request.

    502, not 500: the HTTP server itself is fine and answered; the engine process behind it failed, as a gateway's
    upstream does. The model's next request gets a fresh runner."""

    status = 502
    code = "engine_stopped"
