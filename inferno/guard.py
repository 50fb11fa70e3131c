"""The cross-site guard every request passes before a route sees it: the Host header (DNS rebinding), the
Origin header (web pages), the content type of JSON routes, and CORS answers for the origins allowed.

A browser marks every cross-site request with an `Origin` header and cannot forge it; official clients and curl
send none. So a request whose Origin is present and not allowed is refused here with a 403, before any route
reads its body — that stops the "simple" requests (text/plain, no preflight) a page can send with `fetch(…,
{mode: "no-cors"})`. A page cannot read answers either: CORS headers go only to allowed origins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferno.errors import BadRequestError, ForbiddenError, InfernoError

if TYPE_CHECKING:
    from inferno.config import Settings

# Content types a JSON route takes: JSON, or none at all (a bare client). curl's `-d` default (a form type) is
# taken only without an Origin: every browser sends an Origin with a form or fetch POST, so that case is never a
# page, and Ollama's curl recipes keep working.
_JSON_TYPES = ("application/json",)
_CURL_TYPES = ("application/x-www-form-urlencoded",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PREFLIGHT_MAX_AGE_S = 600  # a browser asks again for the same route after this long (CORS preflight cache)


class UnsupportedMediaError(InfernoError):
    status = 415


@dataclass(frozen=True)
class Policy:
    """Who may talk to the server: allowed origins ("*": any) and host names (beside IP literals)."""

    origins: frozenset[str]
    any_origin: bool
    hosts: frozenset[str]
    any_host: bool
    loopback_only: bool  # bound to loopback: an IP literal in Host must be a loopback address


def _is_loopback_bind(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def own_origins(host: str, port: int) -> list[str]:
    """The server's own origins (its web UI, `inferno serve` pages): loopback names and the configured host."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown not in names and host not in ("0.0.0.0", "::"):
        names.append(shown)
    return [f"{scheme}://{n}:{port}" for n in names for scheme in ("http", "https")]


def make_policy(settings: Settings) -> Policy:
    listed = [o.strip().rstrip("/") for o in settings.origins if o.strip()]
    origins = set(own_origins(settings.host, settings.port)) | {o.lower() for o in listed if o != "*"}
    hosts = {h.lower() for h in settings.allowed_hosts if h != "*"}
    if not _is_ip(settings.host) and settings.host not in ("localhost", "0.0.0.0", "::"):
        hosts.add(settings.host.lower())  # the configured name the server is reached by
    return Policy(frozenset(origins), "*" in listed, frozenset(hosts), "*" in settings.allowed_hosts,
                  _is_loopback_bind(settings.host))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def origin_allowed(policy: Policy, origin: str) -> bool:
    return policy.any_origin or origin.rstrip("/").lower() in policy.origins


def host_allowed(policy: Policy, host_header: str) -> bool:
    """Host is an IP literal (a loopback one when bound to loopback), localhost, *.localhost or a configured name.

    Names are compared whole, never by prefix: `127.0.0.1.evil.example` is a name a rebinding DNS server
    answers with 127.0.0.1, not an address."""
    value = host_header.strip().lower()
    if value.startswith("["):
        name, _, _ = value[1:].partition("]")
    else:
        name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    if not name:
        return True  # no Host at all (HTTP/1.0): not a browser, which always names the host it resolved
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return address.is_loopback or not policy.loopback_only
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return policy.any_host or name in policy.hosts


def check(policy: Policy, method: str, headers: Any, json_route: bool) -> InfernoError | None:
    """Why this request is refused (before its body is read), or None."""
    if not host_allowed(policy, headers.get("Host", "")):
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach us.
        return BadRequestError("host not allowed: set INFERNO_ALLOWED_HOSTS to reach the server by this name")
    origin = headers.get("Origin")
    if origin is not None and not origin_allowed(policy, origin):
        return ForbiddenError(f"origin {origin[:200]} is not allowed: list it in INFERNO_ORIGINS")
    if json_route and method not in SAFE_METHODS:
        kind = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        ok = not kind or kind in _JSON_TYPES or kind.endswith("+json") or (origin is None and kind in _CURL_TYPES)
        if not ok:
            return UnsupportedMediaError(f"content type {kind} is not accepted: send Content-Type: application/json")
    return None


def cors_headers(request_headers: Any) -> dict[str, str]:
    """The CORS answer for an allowed origin; SDKs send Authorization and x-stainless-* headers, so the headers a
    preflight asks for are granted as asked."""
    return {"Access-Control-Allow-Origin": request_headers.get("Origin", ""), "Vary": "Origin",
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": request_headers.get(
                "Access-Control-Request-Headers",
                "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, x-stainless-*")[:2000],
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)}
