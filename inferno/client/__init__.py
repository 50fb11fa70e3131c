"""The native Python client for `inferno serve`, shaped like the `openai` package.

    from inferno.client import InfernoClient
    c = InfernoClient()                       # INFERNO_HOST / INFERNO_API_KEY by default
    c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}])

httpx is imported with this package, never by `inferno` itself.
"""

from ._async import AsyncInfernoClient, AsyncStream
from ._sync import InfernoClient, Stream
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InfernoClientError,
    InternalServerError,
    NotFoundError,
    ServerBusyError,
    StreamError,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncInfernoClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "InfernoClient",
    "InfernoClientError",
    "InternalServerError",
    "NotFoundError",
    "ServerBusyError",
    "Stream",
    "StreamError",
]
