"""Exceptions and warnings raised by mcpauth.

The tree::

    MCPAuthError(Exception)                     root, never raised itself; .retryable
    ├── ConfigurationError(MCPAuthError, ValueError)
    │   │                                       the caller's fault, before credentials go out
    │   ├── InvalidKeyError                     unusable, too small or wrong-type key
    │   └── MissingDependencyError(.., ImportError)
    │                                           signing needs the `cryptography` package
    ├── InsecureEndpointError                   an http:// URL that is not loopback
    ├── TransportError                          DNS, TLS, connection, timeout; retryable
    ├── ProtocolError                           a peer broke an RFC or sent unparseable data;
    │   │                                       .status_code; retryable on 408, 429, 5xx
    │   ├── DiscoveryError                      bad RFC 9728 / RFC 8414 metadata
    │   │   ├── IssuerMismatchError             metadata `issuer` is not the one asked for
    │   │   ├── ResourceMismatchError           PRM `resource` is not this server
    │   │   └── AuthorizationServerMismatchError
    │   │                                       not the pinned `expected_issuer`
    │   └── TokenResponseError                  2xx without a usable token, bad JSON
    ├── OAuthError                              RFC 6749 §5.2 error response
    ├── MCPError                                a JSON-RPC error from the MCP server:
    │                                           .code .data .status_code
    ├── UnauthorizedError                       the MCP server refused the token (401)
    └── InsufficientScopeError                  403 insufficient_scope after step-up
    MCPAuthWarning(UserWarning)

Local and remote errors are different types (h11's split): a cron job treats a bad
configuration and a misbehaving peer differently. Every exception here is plain data:
it pickles, and its message never contains a secret, a token, an assertion, a header or
a raw response body. Attributes that come from a peer (``error_description`` and the
like) are truncated and stripped of control characters before they are stored. Every
credential mcpauth holds or obtained is masked (``[masked]``) in messages and in those
attributes, in its raw and encoded forms, even when a peer echoes it back.
"""

import sys
import unicodedata
import warnings
from typing import Any, Dict, Optional, Tuple, TypeVar, cast

from ._compat import lazy_pattern
from ._mask import longest_form, mask

__all__ = [
    "MCPAuthError",
    "ConfigurationError",
    "InvalidKeyError",
    "MissingDependencyError",
    "InsecureEndpointError",
    "TransportError",
    "ProtocolError",
    "DiscoveryError",
    "IssuerMismatchError",
    "ResourceMismatchError",
    "AuthorizationServerMismatchError",
    "TokenResponseError",
    "OAuthError",
    "MCPError",
    "UnauthorizedError",
    "InsufficientScopeError",
    "MCPAuthWarning",
]

#: Longest peer-supplied text kept on an exception (error_description and friends).
MAX_PEER_TEXT = 300


# Unicode general categories never shown as they are: controls (Cc: C0, DEL, C1 such as
# NEL), format characters (Cf: bidi overrides, zero-width characters), the line and
# paragraph separators (Zl U+2028, Zp U+2029) and lone surrogates (Cs), which cannot be
# encoded to write a log line (Unicode 15 §4.5, UTS #39 §3.1 on spoofing with bidi controls).
_UNSAFE_CATEGORIES = frozenset(["Cc", "Cf", "Zl", "Zp", "Cs"])
_PRINTABLE_ASCII = lazy_pattern(r"\A[ -~]*\Z")


def _is_unsafe_char(ch: str) -> bool:
    if " " <= ch < "\x7f":  # printable ASCII: the common case, without a table lookup
        return False
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def clean_text(value: str) -> str:
    """``value`` with every control, format, line-separator and surrogate character
    replaced by a space (one for one, so the length is unchanged)."""
    if _PRINTABLE_ASCII.match(value):
        return value
    return "".join(" " if _is_unsafe_char(ch) else ch for ch in value)


def clean_peer_text(value: Any, limit: int = MAX_PEER_TEXT) -> Optional[str]:
    """Make a peer-supplied string safe to put in a message or a log line.

    Non-strings become None; every credential mcpauth holds or obtained is masked
    (before the cut, so no prefix of one survives it); control characters and line
    breaks (log injection: C0, DEL, C1 such as NEL, U+2028, U+2029), format characters
    such as bidi overrides, and lone surrogates (which cannot be encoded to write a log
    line) become spaces; the result is cut to ``limit`` characters. Only the first
    ``limit`` characters plus the longest credential form are looked at, so the cost is
    bounded whatever the string's length.
    """
    if not isinstance(value, str):
        return None
    window = limit + longest_form()
    # Masked before cleaning (a credential may hold a character cleaning replaces) and
    # after (cleaning may turn a line break into the space a credential holds).
    out = mask(clean_text(mask(value[:window])))
    if len(out) > limit or len(value) > window:
        return out[:limit] + "..."
    return out


def _restore(cls: type, args: Tuple[Any, ...], state: Dict[str, Any]) -> "MCPAuthError":
    exc = cls.__new__(cls, *args)  # type: MCPAuthError
    exc.args = args
    exc.__dict__.update(state)
    return exc


_E = TypeVar("_E", bound="MCPAuthError")


class MCPAuthError(Exception):
    """Root of every mcpauth exception.

    Attributes:
        message: the human-readable message (never a secret or a body).
        retryable: True when trying the same thing again later may succeed.
        retry_after: seconds to wait before trying again, when known: the server's
            ``Retry-After`` (RFC 9110 §10.2.3, capped), or what is left of the hold-off
            during which mcpauth sends no request to that server; otherwise None.
    """

    retryable = False
    retry_after = None  # type: Optional[float]

    def __init__(self, message: str) -> None:
        if isinstance(message, str):
            message = mask(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return "{}({!r})".format(type(self).__name__, self.message)

    def __reduce__(self) -> Any:
        # Subclasses take keyword arguments; rebuild from state, not from __init__.
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def _reworded(self: "_E", message: str) -> "_E":
        """The same error (its type and every attribute) saying ``message`` instead."""
        exc = cast("_E", _restore(type(self), self.args, dict(self.__dict__)))
        exc.message = mask(message)
        exc.args = (exc.message,) + tuple(self.args[1:])
        return exc


class ConfigurationError(MCPAuthError, ValueError):
    """The caller's configuration cannot work. Raised before any credential is sent
    (most checks run before any I/O; a few, such as the signing algorithm the server
    accepts, need discovery first)."""


class InvalidKeyError(ConfigurationError):
    """A private key could not be loaded, or is unsuitable for the algorithm."""


class MissingDependencyError(ConfigurationError, ImportError):
    """A feature needs an optional package that is not installed (``cryptography``)."""

    def __init__(self, message: str, package: str = "cryptography") -> None:
        super().__init__(message)
        self.package = package


class InsecureEndpointError(MCPAuthError):
    """An endpoint is not https and not on a loopback host.

    Raised before any request is sent to it. Plain http is allowed only for
    ``localhost``, ``127.0.0.0/8`` and ``::1``, or when the caller passed
    ``allow_insecure_http=True``.
    """

    def __init__(self, message: str, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.url = url


class TransportError(MCPAuthError):
    """The request did not complete: DNS, connection, TLS or timeout."""

    retryable = True


def _retryable_status(status_code: Optional[int]) -> bool:
    """408 (timeout), 429 (rate limit) and 5xx (RFC 9110 §15.6) may pass if tried later."""
    return status_code is not None and (status_code in (408, 429) or status_code >= 500)


class ProtocolError(MCPAuthError):
    """A peer answered in a way the specifications do not allow.

    Attributes:
        status_code: the HTTP status of the answer, or None.
        retryable: True for a 408, 429 or 5xx ``status_code``, unless set on the
            instance (``exc.retryable = True``), which wins and survives pickling.
    """

    def __init__(self, message: str, status_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        override = self.__dict__.get("_retryable")
        if override is not None:
            return bool(override)
        return _retryable_status(self.status_code)

    @retryable.setter
    def retryable(self, value: bool) -> None:
        # Kept in __dict__, so pickling (which copies __dict__) keeps it.
        self.__dict__["_retryable"] = bool(value)


class DiscoveryError(ProtocolError):
    """Protected resource or authorization server metadata is missing or invalid."""


def _peer_value(value: Optional[str]) -> Optional[str]:
    # A URL a peer sent, kept whole on an exception but without control characters.
    return clean_text(value) if isinstance(value, str) else value


class IssuerMismatchError(DiscoveryError):
    """RFC 8414 §3.3: the metadata's ``issuer`` is not the issuer it was fetched for."""

    def __init__(self, message: str, expected: Optional[str] = None,
                 received: Optional[str] = None) -> None:
        super().__init__(message)
        self.expected = _peer_value(expected)
        self.received = _peer_value(received)


class ResourceMismatchError(DiscoveryError):
    """RFC 9728 §3.3: the metadata's ``resource`` does not identify this server."""

    def __init__(self, message: str, expected: Optional[str] = None,
                 received: Optional[str] = None) -> None:
        super().__init__(message)
        self.expected = _peer_value(expected)
        self.received = _peer_value(received)


class AuthorizationServerMismatchError(DiscoveryError):
    """Discovery led to an authorization server other than ``expected_issuer``.

    Raised before any secret, assertion or Basic header is sent to it.
    """

    def __init__(self, message: str, expected_issuer: Optional[str] = None,
                 issuer: Optional[str] = None) -> None:
        super().__init__(message)
        self.expected_issuer = _peer_value(expected_issuer)
        self.issuer = _peer_value(issuer)


class TokenResponseError(ProtocolError):
    """A successful token response that cannot be used (no token, bad type, not JSON)."""


_RETRYABLE_OAUTH_CODES = frozenset(["server_error", "temporarily_unavailable"])


class OAuthError(MCPAuthError):
    """An RFC 6749 §5.2 error response from a token endpoint.

    Attributes:
        error: the ``error`` code, such as ``invalid_client`` or ``invalid_grant``.
        error_description: the server's description, cleaned and truncated, or None.
        error_uri: the ``error_uri``, or None.
        status_code: the HTTP status of the response.
        token_endpoint, client_id, auth_method: where the request went, the client id it
            sent (None if none) and how the client authenticated (``client_secret_basic``,
            ``client_secret_post``, ``private_key_jwt``, ``none``); None when unknown.
    """

    token_endpoint: Optional[str] = None
    client_id: Optional[str] = None
    auth_method: Optional[str] = None

    def __init__(self, error: str, error_description: Optional[str] = None,
                 error_uri: Optional[str] = None, status_code: Optional[int] = None,
                 message: Optional[str] = None) -> None:
        error = clean_peer_text(error, 100) or "invalid_response"
        error_description = clean_peer_text(error_description)
        if message is None:
            message = error + (": " + error_description if error_description else "")
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.error_uri = clean_peer_text(error_uri)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return (self.error in _RETRYABLE_OAUTH_CODES
                or self.status_code == 429
                or (self.status_code is not None and self.status_code >= 500))


class MCPError(MCPAuthError):
    """The MCP server answered a request with a JSON-RPC error (JSON-RPC 2.0 §5.1).

    Raised for the ``error`` member of a response, whatever the HTTP status that carried
    it (a 2026-07-28 server sends its protocol errors with 400 or 404). A tool that
    fails answers with a *result* whose ``isError`` is true, which is returned, not
    raised.

    Attributes:
        message: the server's ``error.message``, cleaned and truncated.
        code: the ``error.code`` (an int such as -32601, or None if the server sent none).
        data: the ``error.data`` value as received (JSON), or None.
        status_code: the HTTP status of the response, or None.
    """

    def __init__(self, message: Any, code: Optional[int] = None, data: Any = None,
                 status_code: Optional[int] = None) -> None:
        super().__init__(clean_peer_text(message) or "JSON-RPC error without a message")
        self.code = code if isinstance(code, int) and not isinstance(code, bool) else None
        self.data = data
        self.status_code = status_code

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return _retryable_status(self.status_code)


class UnauthorizedError(MCPAuthError):
    """The MCP server answered 401 and no new token could fix it.

    Raised when a request was refused again after one fresh token, or when a provider
    has no way to get a new token. Carries the server's Bearer challenge.

    Attributes:
        status_code: 401.
        error, error_description, scope, resource_metadata: from ``WWW-Authenticate``.
    """

    def __init__(self, message: str, status_code: Optional[int] = 401,
                 error: Optional[str] = None, error_description: Optional[str] = None,
                 scope: Optional[str] = None, resource_metadata: Optional[str] = None
                 ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = clean_peer_text(error, 100)
        self.error_description = clean_peer_text(error_description)
        self.scope = clean_peer_text(scope, 1000)
        self.resource_metadata = clean_peer_text(resource_metadata, 2000)


class InsufficientScopeError(MCPAuthError):
    """The MCP server still answers 403 ``insufficient_scope`` after stepping up.

    Attributes:
        required_scope: the scope the server's last challenge asked for.
        status_code: 403.
    """

    def __init__(self, message: str, required_scope: Optional[str] = None,
                 status_code: Optional[int] = 403,
                 error_description: Optional[str] = None,
                 resource_metadata: Optional[str] = None) -> None:
        super().__init__(message)
        self.required_scope = clean_peer_text(required_scope, 1000)
        self.status_code = status_code
        self.error_description = clean_peer_text(error_description)
        self.resource_metadata = clean_peer_text(resource_metadata, 2000)


class MCPAuthWarning(UserWarning):
    """A peer deviates from a recommendation but the request can go on."""


# Where the frames of mcpauth itself and of the code that calls back into it live: a
# warning is attributed to the first frame outside them.
_PACKAGE = __name__.rpartition(".")[0]  # "mcpauth", or "yourpkg._vendor.mcpauth"
_PASS_THROUGH = ("requests", "urllib3", "contextlib", "functools", "threading")


def _is_ours(module: str) -> bool:
    return (module == _PACKAGE or module.startswith(_PACKAGE + ".")
            or module.split(".", 1)[0] in _PASS_THROUGH)


def warn_caller(message: str) -> None:
    """Issue an :class:`MCPAuthWarning` that points at the application's line.

    The stack level is counted past every frame of mcpauth (installed or vendored) and of
    ``requests``/``urllib3``, through which a provider is called, so the warning shows
    the caller's file and line, and ``-W``/``filterwarnings`` rules by module match the
    caller's module.
    """
    level = 1
    frame = sys._getframe(0)  # type: Any
    while frame is not None and _is_ours(frame.f_globals.get("__name__") or ""):
        frame = frame.f_back
        level += 1
    warnings.warn(mask(message), MCPAuthWarning, stacklevel=level)
