"""Token requests: grants, client authentication and the token response.

* RFC 6749 §4.4 client credentials grant; §2.3.1 ``client_secret_basic`` (id and secret
  form-urlencoded before Base64, Appendix B) and ``client_secret_post``; §3.2 (POST,
  form-urlencoded, no repeated parameters); §5.1 / §5.2 responses and errors;
  Appendix A.12 (an ``access_token`` is printable ASCII, checked before it is used).
* RFC 7523 §2.1 JWT bearer grant (``assertion``), §2.2 / §3 JWT client authentication
  (``private_key_jwt``), as updated by draft-ietf-oauth-rfc7523bis: ``aud`` is the
  authorization server's issuer as its sole value, ``typ`` ``client-authentication+jwt``.
* RFC 8693 §2.1 token exchange (fields only; see :mod:`mcpauth.crossapp`).
* RFC 8707 §2 ``resource``; RFC 6749 §3.3 scope syntax.

``build_*`` return values and ``parse_*`` read them; only :func:`request_token` sends.
"""

import abc
import base64
import email.utils
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple
from urllib.parse import quote_plus

from . import _mask
from ._compat import lazy_pattern
from .errors import ConfigurationError, InvalidKeyError, OAuthError, TokenResponseError
from .transport import HttpRequest, HttpResponse, Transport, parse_json_object, redact_url

__all__ = [
    "GRANT_TYPE_CLIENT_CREDENTIALS",
    "GRANT_TYPE_JWT_BEARER",
    "GRANT_TYPE_TOKEN_EXCHANGE",
    "CLIENT_ASSERTION_TYPE_JWT_BEARER",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_ID_JAG",
    "TOKEN_TYPE_REFRESH_TOKEN",
    "TOKEN_TYPE_SAML2",
    "TOKEN_TYPE_JWT",
    "AUTH_METHODS",
    "TokenResponse",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "PrivateKeyJwt",
    "NoClientAuth",
    "select_auth_method",
    "validate_scope",
    "normalize_scope",
    "build_token_request",
    "parse_token_response",
    "request_token",
    "retry_after_seconds",
]

logger = logging.getLogger("mcpauth")

GRANT_TYPE_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
TOKEN_TYPE_REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"
TOKEN_TYPE_SAML2 = "urn:ietf:params:oauth:token-type:saml2"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"

#: RFC 7591 names of the client authentication methods mcpauth implements.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
# RFC 6749 Appendix A.12: access-token = 1*VSCHAR, VSCHAR = %x20-7E.
_ACCESS_TOKEN = lazy_pattern(r"\A[\x20-\x7e]+\Z")
_SCOPE_TOKEN = lazy_pattern(r"\A[\x21\x23-\x5b\x5d-\x7e]+\Z")  # \Z: `$` allows a final "\n"
# Claims that private_key_jwt sets itself; `claims=` may add others but not replace these.
_REGISTERED_CLAIMS = frozenset(["iss", "sub", "aud", "exp", "iat", "jti", "nbf"])
#: Longest lifetime accepted for a client assertion (RFC 7523 §3: ASes may reject far exp).
MAX_ASSERTION_LIFETIME = 3600


def _is_access_token(value: Any) -> bool:
    """True for a string an RFC 6749 Appendix A.12 ``access-token`` may be (1*VSCHAR).

    Anything else (line breaks, NUL, non-ASCII) cannot be put in an ``Authorization``
    header: http.client would raise with the token in the message, or a CR LF would
    inject a header.
    """
    return isinstance(value, str) and _ACCESS_TOKEN.match(value) is not None


def validate_scope(scope: Optional[str], what: str = "scope") -> Optional[str]:
    """Check ``scope`` against RFC 6749 §3.3 and return it normalised (or None).

    Raises:
        ConfigurationError: a scope-token with a forbidden character (space-separated
            tokens of %x21 / %x23-5B / %x5D-7E), or a non-string.
    """
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise ConfigurationError("{} must be a space-separated string".format(what))
    return normalize_scope(scope.split(" "), what)


def normalize_scope(tokens: Sequence[str], what: str = "scope") -> Optional[str]:
    """Join scope tokens with single spaces, first occurrence order, duplicates removed.

    Linear in the total length of ``tokens`` (a set, not a list, remembers the tokens
    already taken).

    Raises:
        ConfigurationError: a token with a character RFC 6749 §3.3 does not allow, or a
            token that is not a str.
    """
    seen: Set[str] = set()
    kept: List[str] = []
    for tok in tokens:
        if tok == "":
            continue
        if not isinstance(tok, str) or not _SCOPE_TOKEN.match(tok):
            raise ConfigurationError(
                "{} contains a character RFC 6749 §3.3 does not allow".format(what))
        if tok not in seen:
            seen.add(tok)
            kept.append(tok)
    return " ".join(kept) if kept else None


class TokenResponse(object):
    """A successful token endpoint response (RFC 6749 §5.1, RFC 8693 §2.2.1).

    Attributes:
        access_token: the token (for RFC 8693 exchanges, the issued token, e.g. an ID-JAG).
        token_type: as sent by the server (compared case-insensitively).
        expires_in: seconds of validity from the server, or None.
        scope: the granted scope if the server said, else None.
        issued_token_type: RFC 8693 ``issued_token_type``, or None.
        received_at: the clock value when the response was parsed.
    """

    __slots__ = ("access_token", "token_type", "expires_in", "scope", "refresh_token",
                 "issued_token_type", "received_at")

    def __init__(self, access_token: str, token_type: str, expires_in: Optional[float] = None,
                 scope: Optional[str] = None, refresh_token: Optional[str] = None,
                 issued_token_type: Optional[str] = None,
                 received_at: Optional[float] = None) -> None:
        _mask.remember(access_token, refresh_token)
        self.access_token = access_token
        self.token_type = token_type
        self.expires_in = expires_in
        self.scope = scope
        self.refresh_token = refresh_token
        self.issued_token_type = issued_token_type
        self.received_at = time.time() if received_at is None else received_at

    @property
    def expires_at(self) -> Optional[float]:
        """Absolute expiry (same clock as ``received_at``), or None when unknown."""
        if self.expires_in is None:
            return None
        return self.received_at + self.expires_in

    def __repr__(self) -> str:
        return ("TokenResponse(access_token=[secure], token_type={!r}, expires_in={!r}, "
                "scope={!r}, issued_token_type={!r})").format(
                    self.token_type, self.expires_in, self.scope, self.issued_token_type)

    def __reduce__(self) -> Any:
        raise TypeError("TokenResponse holds a token and cannot be pickled")


class ClientAuth(abc.ABC):
    """How a client authenticates at a token endpoint (RFC 6749 §2.3)."""

    #: The RFC 7591 ``token_endpoint_auth_method`` name.
    method = ""

    def __init__(self, client_id: Optional[str]) -> None:
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise ConfigurationError("client_id must be a non-empty string")
        self.client_id = client_id

    @abc.abstractmethod
    def apply(self, fields: List[Tuple[str, str]], headers: List[Tuple[str, str]],
              issuer: Optional[str], token_endpoint: str) -> None:
        """Add this method's fields or headers to a token request being built."""

    def __repr__(self) -> str:
        return "{}(client_id={!r})".format(type(self).__name__, self.client_id)

    def __reduce__(self) -> Any:
        raise TypeError("{} holds a credential and cannot be pickled".format(
            type(self).__name__))


def _require_secret(client_id: Optional[str], client_secret: Any) -> str:
    if not client_id:
        raise ConfigurationError("client_id is required")
    if not isinstance(client_secret, str) or not client_secret:
        raise ConfigurationError("client_secret must be a non-empty string")
    problem = _vschar_problem(client_secret)
    if problem is not None:
        # Never the value: a secret is described, not shown.
        raise ConfigurationError(
            "client_secret contains {}, which RFC 6749 Appendix A.2 does not allow in a "
            "client secret{}".format(problem, (
                "; a secret read with open(...).read() keeps the file's newline: use "
                ".read().strip()" if problem.startswith("a line break") else "")))
    return client_secret


def _vschar_problem(value: str) -> Optional[str]:
    """What ``value`` has that RFC 6749 Appendix A.2 (``*VSCHAR``) forbids, or None."""
    if "\r" in value or "\n" in value:
        body = value.rstrip("\r\n")
        where = "at its end" if body and "\r" not in body and "\n" not in body \
            else "inside it"
        return "a line break (CR or LF) {}".format(where)
    # Printable non-ASCII is let through: RFC 6749 Appendix B shows how it is encoded,
    # and some servers issue such secrets. Control characters never belong in one.
    if any(ch < "\x20" or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029" for ch in value):
        return "a control character"
    return None


class ClientSecretBasic(ClientAuth):
    """``client_secret_basic``: HTTP Basic with the form-urlencoded id and secret.

    RFC 6749 §2.3.1: "The client identifier is encoded using the
    application/x-www-form-urlencoded encoding algorithm per Appendix B, and the encoded
    value is used as the username; the client password is encoded using the same
    algorithm and used as the password."
    """

    method = "client_secret_basic"

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__(client_id)
        secret = _require_secret(client_id, client_secret)
        _mask.hold(self, secret, *_mask.basic_forms(client_id, secret))
        raw = "{}:{}".format(quote_plus(client_id, safe=""), quote_plus(secret, safe=""))
        # Keep only the finished header value (httpx BasicAuth does the same).
        self._header = "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")

    def apply(self, fields: List[Tuple[str, str]], headers: List[Tuple[str, str]],
              issuer: Optional[str], token_endpoint: str) -> None:
        headers.append(("Authorization", self._header))


class ClientSecretPost(ClientAuth):
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the body (RFC 6749 §2.3.1)."""

    method = "client_secret_post"

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__(client_id)
        self._client_secret = _require_secret(client_id, client_secret)
        _mask.hold(self, self._client_secret)

    def apply(self, fields: List[Tuple[str, str]], headers: List[Tuple[str, str]],
              issuer: Optional[str], token_endpoint: str) -> None:
        fields.append(("client_id", self.client_id or ""))
        fields.append(("client_secret", self._client_secret))


class NoClientAuth(ClientAuth):
    """``none``: no client authentication; ``client_id`` is sent if one is set."""

    method = "none"

    def apply(self, fields: List[Tuple[str, str]], headers: List[Tuple[str, str]],
              issuer: Optional[str], token_endpoint: str) -> None:
        if self.client_id:
            fields.append(("client_id", self.client_id))


class PrivateKeyJwt(ClientAuth):
    """``private_key_jwt``: a signed JWT client assertion (RFC 7523 §2.2 and §3).

    A fresh assertion is signed for every token request:

    * header: ``alg``, ``typ`` (``client-authentication+jwt`` by default, per
      draft-ietf-oauth-rfc7523bis; pass ``typ=None`` to omit or ``"JWT"`` for old servers)
      and ``kid`` if given;
    * claims: ``iss`` = ``sub`` = client_id, ``aud`` = the authorization server's issuer
      (or ``audience`` if given), ``iat``, ``exp`` = ``iat`` + ``lifetime``, a random
      ``jti`` per assertion, plus ``claims`` (which may add claims, never replace these).

    The key may live elsewhere (an HSM, a cloud KMS, a signing service): instead of
    ``private_key`` pass exactly one of

    * ``signer``: ``callable(signing_input: bytes) -> signature: bytes``, with
      ``public_jwk`` (every signature is then verified before it is sent) or at least
      ``algorithm``. The assertion is built here as for a local key; an ECDSA signature
      in DER form is converted to the JOSE R||S form (RFC 7518 §3.4);
    * ``assertion``: ``callable(audience: str) -> str`` returning a finished client
      assertion for that audience. It is checked before it is sent, as one built here
      would be: a compact JWS with an asymmetric ``alg`` (``algorithm`` if given), ``iss``
      and ``sub`` the client id, ``aud`` the audience, an ``exp`` in the future at most
      ``MAX_ASSERTION_LIFETIME`` seconds away, and a ``jti``; its signature is verified
      when ``public_jwk`` is given.

    Args:
        client_id: the registered client identifier.
        private_key: anything :func:`mcpauth.jws.load_private_key` accepts; loaded once.
        algorithm: JWS algorithm, by default the key's (RS256 for RSA, ES256 for P-256).
        lifetime: seconds until ``exp`` (1 to 3600; default 300).
        audience: override ``aud`` (legacy servers that want the token endpoint URL).
        typ: the JWS ``typ`` header value.
        key_id: the JWS ``kid`` header value; None to omit.
        claims: extra claims.
        clock: returns the current time in seconds (for tests).
        signer: a signing callable, instead of ``private_key``.
        public_jwk: the public JWK of the key behind ``signer`` or ``assertion``.
        assertion: an assertion callable, instead of ``private_key``.
    """

    method = "private_key_jwt"

    def __init__(self, client_id: str, private_key: Any = None,
                 algorithm: Optional[str] = None, lifetime: int = 300,
                 audience: Optional[str] = None,
                 typ: Optional[str] = "client-authentication+jwt",
                 key_id: Optional[str] = None, claims: Optional[Mapping[str, Any]] = None,
                 clock: Callable[[], float] = time.time, *,
                 signer: Optional[Callable[[bytes], bytes]] = None,
                 public_jwk: Optional[Mapping[str, Any]] = None,
                 assertion: Optional[Callable[[str], str]] = None) -> None:
        super().__init__(client_id)
        if not client_id:
            raise ConfigurationError("client_id is required")
        from . import jws

        _mask.hold(self, *_key_texts(private_key))
        given = [name for name, value in (("private_key", private_key), ("signer", signer),
                                          ("assertion", assertion)) if value is not None]
        if len(given) != 1:
            raise ConfigurationError(
                "pass exactly one of private_key, signer and assertion{}".format(
                    " (got {})".format(" and ".join(given)) if given else ""))
        for name, value in (("signer", signer), ("assertion", assertion)):
            if value is not None and not callable(value):
                raise TypeError("{} must be callable, not {}".format(
                    name, type(value).__name__))
        if public_jwk is not None and private_key is not None:
            raise ConfigurationError("public_jwk goes with signer or assertion; a "
                                     "private_key has its own public key")
        self._key = None  # type: Optional[jws.SigningKey]
        # A key in a form whose structure was checked, loaded (and fully validated) before
        # it first signs: a run that finds its token cached never imports cryptography.
        self._key_data = None  # type: Any
        self._key_lock = threading.Lock()
        self._signer = signer
        self._assertion = assertion
        self._public_jwk = None  # type: Optional[Dict[str, str]]
        if public_jwk is not None:
            if not isinstance(public_jwk, Mapping):
                raise TypeError("public_jwk must be a JWK dict, not {}".format(
                    type(public_jwk).__name__))
            if "d" in public_jwk:
                raise InvalidKeyError("public_jwk holds a private key ('d'); give the "
                                      "public JWK only")
            self._public_jwk = jws.public_jwk(dict(public_jwk))
        deferred = jws.key_algorithms(private_key) if private_key is not None else None
        if deferred is not None:
            self._key_data = private_key
            algorithms = deferred  # type: Sequence[str]
            kind = jws._ALGS[deferred[0]][0]
        elif private_key is not None:
            self._key = jws.load_private_key(private_key)
            algorithms = self._key.algorithms
            kind = self._key.kty
        elif self._public_jwk is not None:
            algorithms = _algorithms_of_jwk(self._public_jwk)
            kind = self._public_jwk["kty"]
        else:
            algorithms = jws.ALGORITHMS
            kind = "declared"
        if algorithm is None:
            if signer is not None and self._public_jwk is None:
                raise ConfigurationError(
                    "a signer needs public_jwk= (best: every signature is verified) or "
                    "algorithm= to say what it signs")
            if self._assertion is None:
                algorithm = algorithms[0]
        if algorithm is not None and algorithm not in algorithms:
            raise ConfigurationError("algorithm {!r} cannot be used with this {} key".format(
                algorithm, kind))
        self.algorithm = algorithm  # None: whatever the assertion callable's alg is
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not (
                0 < lifetime <= MAX_ASSERTION_LIFETIME):
            raise ConfigurationError("lifetime must be an integer from 1 to {} seconds".format(
                MAX_ASSERTION_LIFETIME))
        self.lifetime = lifetime
        self.audience = audience
        self.typ = typ
        self.key_id = key_id
        extra = dict(claims or {})
        clash = sorted(_REGISTERED_CLAIMS.intersection(extra))
        if clash:
            raise ConfigurationError(
                "claims may not replace the registered claims {}; use audience= for aud".format(
                    ", ".join(clash)))
        self._claims = extra
        self._clock = clock
        self._prepared = None  # type: Optional[Tuple[Tuple[Any, ...], Callable[[Any], str]]]

    def __repr__(self) -> str:
        key = self._key if self._key is not None else (
            "signer" if self._signer is not None else "assertion callable"
            if self._key_data is None else "not loaded yet")
        return "PrivateKeyJwt(client_id={!r}, algorithm={!r}, key={})".format(
            self.client_id, self.algorithm, key if isinstance(key, str) else repr(key))

    def key_thumbprint(self) -> Optional[str]:
        """The RFC 7638 thumbprint of the client key, when known (not for an assertion
        callable without ``public_jwk``)."""
        from . import jws

        if self._key is None and self._key_data is not None:
            # A key not loaded yet (nothing signed so far): its thumbprint from its
            # structure (RSA), else load it now.
            thumbprint = jws.unloaded_thumbprint(self._key_data)
            if thumbprint is not None:
                return thumbprint
            self._load_key()
        if self._key is not None:
            return self._key.thumbprint()
        if self._public_jwk is not None:
            return jws.jwk_thumbprint(self._public_jwk)
        return None

    def build_assertion(self, issuer: Optional[str], token_endpoint: str) -> str:
        """Sign a new client assertion for ``issuer`` (or ``token_endpoint`` if none is known)."""
        audience = self.audience or issuer
        if not audience:
            # No issuer known (explicit token_endpoint configuration): RFC 7523 §3's
            # original rule allows the token endpoint URL.
            audience = token_endpoint
        if self._assertion is not None:
            return self._checked_assertion(self._assertion(audience), audience)
        import secrets

        now = int(self._clock())
        claims = {
            **self._claims,  # first: a registered claim below always wins
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(24),
        }
        assert self.algorithm is not None
        if self._key is None and self._key_data is not None:
            self._load_key()
        # The header, algorithm and key are checked and encoded once for as long as they
        # stay the same (typ, key_id and algorithm are public attributes).
        settings = (self.algorithm, self.typ, self.key_id, self._key)
        prepared = self._prepared
        if prepared is None or prepared[0] != settings:
            from . import jws

            headers: Dict[str, Any] = {}
            if self.typ:
                headers["typ"] = self.typ
            if self.key_id:
                headers["kid"] = self.key_id
            if self._key is None:
                signer, public_jwk = self._signer, self._public_jwk

                def sign(claims: Any) -> str:
                    return jws.sign_with(claims, signer, settings[0], headers=headers,
                                         public_key=public_jwk)
                prepared = (settings, sign)
            else:
                prepared = (settings, jws._claims_signer(self._key, self.algorithm, headers))
            self._prepared = prepared
        assertion = prepared[1](claims)
        _mask.remember(assertion)
        return assertion

    def _load_key(self) -> None:
        from . import jws

        with self._key_lock:
            if self._key is None:
                key = jws.load_private_key(self._key_data)
                if self.algorithm not in key.algorithms:  # the structure check misread it
                    raise InvalidKeyError("the private key cannot sign {}".format(
                        self.algorithm))
                self._key = key
                self._key_data = None

    def _checked_assertion(self, value: Any, audience: str) -> str:
        """An assertion from the callable, held to what a locally built one satisfies.

        Messages say what is wrong, never the assertion.
        """
        from . import jws

        if isinstance(value, str):
            _mask.remember(value)

        def refuse(problem: str) -> ConfigurationError:
            return ConfigurationError("the client assertion from the assertion callable "
                                      "{} (RFC 7523 §3)".format(problem))

        if not jws.is_compact_jws(value):
            raise refuse("is not a compact JWS")
        try:
            header, claims = jws.decode_unverified(value)
        except ValueError:
            raise refuse("is not a compact JWS with JSON header and claims") from None
        alg = header.get("alg")
        if alg not in jws.ALGORITHMS:
            raise refuse("has no asymmetric alg of RFC 7518 / RFC 8037")
        if self.algorithm is not None and alg != self.algorithm:
            raise refuse("is signed with {}, not the declared {}".format(alg, self.algorithm))
        for name in ("iss", "sub"):
            if claims.get(name) != self.client_id:
                raise refuse("has {} other than the client id".format(name))
        aud = claims.get("aud")
        if aud != audience and aud != [audience]:
            raise refuse("is not addressed to {} (aud)".format(redact_url(audience)))
        now = self._clock()
        exp = jws.numeric_date(claims.get("exp"))
        if exp is None or exp <= now:
            raise refuse("has expired or has no exp")
        if exp - now > MAX_ASSERTION_LIFETIME:
            raise refuse("lives longer than {} seconds".format(MAX_ASSERTION_LIFETIME))
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise refuse("has no jti")
        if self._public_jwk is not None:
            try:
                jws.verify(value, self._public_jwk, [alg])
            except jws.JWSVerificationError:
                raise InvalidKeyError(
                    "the client assertion from the assertion callable does not verify "
                    "with the declared public_jwk") from None
        return str(value)

    def apply(self, fields: List[Tuple[str, str]], headers: List[Tuple[str, str]],
              issuer: Optional[str], token_endpoint: str) -> None:
        fields.append(("client_id", self.client_id or ""))
        fields.append(("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_BEARER))
        fields.append(("client_assertion", self.build_assertion(issuer, token_endpoint)))


def _key_texts(private_key: Any) -> List[Any]:
    """The parts of a private key given as text that a message must never show: the PEM
    and each of its Base64 lines, or a JWK's private members (RFC 7518 §6)."""
    if isinstance(private_key, (str, bytes)):
        text = private_key.decode("latin-1") if isinstance(private_key, bytes) \
            else private_key
        return [text.strip()] + [line.strip() for line in text.splitlines()
                                 if line.strip() and not line.startswith("-----")]
    if isinstance(private_key, Mapping):
        return [private_key.get(name) for name in ("d", "p", "q", "dp", "dq", "qi", "k")]
    return []


def _algorithms_of_jwk(jwk: Mapping[str, str]) -> Tuple[str, ...]:
    """The ``alg`` values a public JWK can verify, the usual one first (as SigningKey)."""
    from . import jws

    return tuple(alg for alg in jws.ALGORITHMS
                 if jws._ALGS[alg][0] == jwk["kty"]
                 and (jwk["kty"] == "RSA" or jws._ALGS[alg][2] == jwk.get("crv")))


def select_auth_method(advertised: Optional[Sequence[str]], configured: Optional[str] = None,
                       has_secret: bool = True, has_key: bool = False) -> str:
    """Choose a client authentication method (RFC 8414 §2, RFC 6749 §2.3).

    An explicitly configured method always wins (the client's registered method cannot
    be discovered). Otherwise a key means ``private_key_jwt``; a secret means
    ``client_secret_basic`` when the list is absent (the RFC 8414 default) or includes it,
    else ``client_secret_post`` when listed. The advertised list is advisory: a method
    that is not listed is logged as a warning and used anyway, because servers often omit
    methods they accept.
    """
    if configured is not None:
        if configured not in AUTH_METHODS:
            raise ConfigurationError("token_endpoint_auth_method must be one of {}".format(
                ", ".join(AUTH_METHODS)))
        method = configured
    elif has_key:
        method = "private_key_jwt"
    elif not has_secret:
        method = "none"
    elif advertised is None or "client_secret_basic" in advertised:
        method = "client_secret_basic"
    elif "client_secret_post" in advertised:
        method = "client_secret_post"
    else:
        method = "client_secret_basic"
    if advertised is not None and method not in advertised:
        logger.warning("authorization server does not advertise %s in "
                       "token_endpoint_auth_methods_supported (%s); using it anyway",
                       method, ", ".join(advertised) or "empty")
    return method


def build_token_request(token_endpoint: str, grant_fields: Sequence[Tuple[str, str]],
                        client_auth: ClientAuth, issuer: Optional[str] = None) -> HttpRequest:
    """Build the POST for a token request (RFC 6749 §3.2).

    Args:
        token_endpoint: the token endpoint URL (already checked by discovery or the caller).
        grant_fields: ``grant_type`` and the grant's parameters, in order.
        client_auth: how the client authenticates; exactly one method is applied (§2.3).
        issuer: the authorization server's issuer (the audience of client assertions).

    Raises:
        ConfigurationError: a parameter would be sent twice.
    """
    fields = list(grant_fields)
    headers: List[Tuple[str, str]] = []
    client_auth.apply(fields, headers, issuer, token_endpoint)
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        raise ConfigurationError("a token request parameter would be sent twice "
                                 "(RFC 6749 §3.2 forbids it)")
    return HttpRequest.post_form(token_endpoint, fields, headers=headers, credentialed=True)


def _parse_expires_in(value: Any, response: HttpResponse) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TokenResponseError("expires_in is not a number", status_code=response.status)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise TokenResponseError("expires_in is not a number",
                                     status_code=response.status) from None
    if not isinstance(value, (int, float)) or value != value or value < 0 or value > 10 ** 9:
        raise TokenResponseError("expires_in is not a usable number of seconds",
                                 status_code=response.status)
    return float(value)


_DELAY_SECONDS = lazy_pattern(r"\A[0-9]{1,9}\Z")


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds a ``Retry-After`` value asks to wait (RFC 9110 §10.2.3), or None.

    ``delay-seconds`` (digits) or an HTTP-date (0 when it is already past); anything
    else, a negative or fractional number included, is None.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if _DELAY_SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # Python < 3.10 returns None for some malformed dates
        return None  # pragma: no cover
    try:
        stamp = when.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return max(0.0, stamp - (time.time() if now is None else now))


def _raise_error_response(response: HttpResponse) -> None:
    """Turn a non-2xx token endpoint response into OAuthError or TokenResponseError.

    On a 429 or 503, the ``Retry-After`` delay (RFC 6585 §4, RFC 9110 §10.2.3) becomes
    the error's ``retry_after``.
    """
    try:
        _raise_error_body(response)
    except (OAuthError, TokenResponseError) as exc:
        if response.status in (429, 503):
            exc.retry_after = retry_after_seconds(response.header("Retry-After"))
        raise


def _raise_error_body(response: HttpResponse) -> None:
    url = redact_url(response.url)
    if 300 <= response.status < 400:
        raise TokenResponseError(
            "token endpoint {} answered HTTP {} (a redirect); token requests are never "
            "redirected".format(url, response.status), status_code=response.status)
    try:
        body = parse_json_object(response, "error response", TokenResponseError)
    except TokenResponseError:
        body = {}
    error = body.get("error")
    if isinstance(error, str) and error:
        raise OAuthError(error, body.get("error_description"), body.get("error_uri"),
                         status_code=response.status)
    exc = TokenResponseError(
        "token endpoint {} answered HTTP {} without an OAuth error body".format(
            url, response.status), status_code=response.status)
    exc.retryable = response.status >= 500 or response.status == 429
    raise exc


def parse_token_response(response: HttpResponse,
                         token_types: Sequence[str] = ("bearer",),
                         issued_token_type: Optional[str] = None,
                         received_at: Optional[float] = None) -> TokenResponse:
    """Parse a token endpoint response (RFC 6749 §5.1, §5.2; RFC 8693 §2.2).

    Args:
        response: the HTTP response.
        token_types: acceptable ``token_type`` values, lowercase (F2: unknown types are
            rejected; ``N_A`` only for token exchange).
        issued_token_type: if set, the RFC 8693 ``issued_token_type`` that must be present.
        received_at: clock value to anchor ``expires_in`` (default ``time.time()``).

    Raises:
        OAuthError: an RFC 6749 §5.2 error body (any status, including a 200 with ``error``).
        TokenResponseError: anything else that does not yield a usable token, including
            an ``access_token`` that is not 1*VSCHAR (RFC 6749 Appendix A.12: printable
            ASCII, so no line break can reach an ``Authorization`` header).
    """
    if not 200 <= response.status < 300:
        _raise_error_response(response)
    body = parse_json_object(response, "token response", TokenResponseError)
    error = body.get("error")
    if isinstance(error, str) and error and "access_token" not in body:
        raise OAuthError(error, body.get("error_description"), body.get("error_uri"),
                         status_code=response.status)
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenResponseError("token response has no access_token",
                                 status_code=response.status)
    if not _is_access_token(access_token):
        # Never quoted: the value is a credential.
        raise TokenResponseError(
            "the access_token in the token response has characters outside the RFC 6749 "
            "Appendix A.12 syntax (printable ASCII only)", status_code=response.status)
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        raise TokenResponseError("token response has no token_type",
                                 status_code=response.status)
    if token_type.lower() not in token_types:
        from .errors import clean_peer_text

        raise TokenResponseError(
            "token_type {!r} is not supported (expected {})".format(
                clean_peer_text(token_type, 40), " or ".join(token_types)),
            status_code=response.status)
    itt = body.get("issued_token_type")
    if itt is not None and not isinstance(itt, str):
        raise TokenResponseError("issued_token_type is not a string",
                                 status_code=response.status)
    if issued_token_type is not None and itt != issued_token_type:
        from .errors import clean_peer_text

        raise TokenResponseError(
            "issued_token_type is {!r}, expected {!r}".format(
                clean_peer_text(itt, 100), issued_token_type), status_code=response.status)
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise TokenResponseError("scope in the token response is not a string",
                                 status_code=response.status)
    refresh = body.get("refresh_token")
    return TokenResponse(
        access_token=access_token,
        token_type=token_type,
        expires_in=_parse_expires_in(body.get("expires_in"), response),
        scope=scope,
        refresh_token=refresh if isinstance(refresh, str) else None,
        issued_token_type=itt,
        received_at=received_at,
    )


# What each RFC 6749 §5.2 error code means, for responses that carry no description.
_ERROR_MEANINGS = {
    "invalid_client": "the authorization server did not accept the client's "
                      "authentication: check the client id, the secret or key, and the "
                      "authentication method the client is registered with",
    "invalid_grant": "the grant or assertion was refused (expired, revoked, or issued "
                     "to another client)",
    "unauthorized_client": "this client may not use this grant type",
    "unsupported_grant_type": "the authorization server does not support this grant type",
    "invalid_scope": "the requested scope is invalid, unknown, or more than the client "
                     "may have",
    "invalid_request": "the request is missing a parameter or is malformed",
    "invalid_target": "the resource (RFC 8707) is not one this authorization server "
                      "issues tokens for",
}


def _located(exc: OAuthError, token_endpoint: str, client_auth: ClientAuth) -> OAuthError:
    """``exc`` with where and how: the token endpoint, client id and authentication method.

    What one checks first when a token request is refused; the server's description
    follows, or what the RFC 6749 §5.2 code means when the server gave none.
    """
    detail = exc.error_description or _ERROR_MEANINGS.get(exc.error)
    message = "{} from the token endpoint {} (client id {}, client authentication {}){}".format(
        exc.error, redact_url(token_endpoint),
        "{!r}".format(client_auth.client_id) if client_auth.client_id else "not sent",
        client_auth.method, ": " + detail if detail else "")
    located = exc._reworded(message)
    located.token_endpoint = token_endpoint
    located.client_id = client_auth.client_id
    located.auth_method = client_auth.method
    return located


def request_token(transport: Transport, token_endpoint: str,
                  grant_fields: Sequence[Tuple[str, str]], client_auth: ClientAuth,
                  issuer: Optional[str] = None, token_types: Sequence[str] = ("bearer",),
                  issued_token_type: Optional[str] = None,
                  clock: Callable[[], float] = time.time, *,
                  dpop: Any = None, dpop_algorithm: Optional[str] = None,
                  dpop_nonces: Any = None, dpop_accept_bearer: bool = False) -> TokenResponse:
    """Send a token request and parse the answer (see :func:`build_token_request`).

    With ``dpop`` (a :class:`mcpauth.dpop.DPoPKey`) the request carries a fresh ``DPoP``
    proof (RFC 9449 §5) with the token endpoint's latest nonce from ``dpop_nonces`` (a
    :class:`mcpauth.dpop.NonceStore`); a 400 ``use_dpop_nonce`` with a ``DPoP-Nonce``
    header is retried once with that nonce (§8), and a nonce on any response replaces
    the stored one (§8.2). The answer must then have ``token_type`` DPoP: a Bearer
    token is refused ("the client MUST discard the response in this case if this
    protection is deemed important", §5) unless ``dpop_accept_bearer``.

    Raises:
        InsecureEndpointError: the token endpoint is not https (nor loopback http).
        TransportError: no response.
        OAuthError, TokenResponseError: see :func:`parse_token_response`.
    """
    grant_type = dict(grant_fields).get("grant_type", "?")
    if dpop is not None:
        from .dpop import NonceStore

        if dpop_nonces is None:
            dpop_nonces = NonceStore()
        token_types = ("dpop", "bearer")
    for attempt in (1, 2):
        request = build_token_request(token_endpoint, grant_fields, client_auth, issuer)
        if dpop is not None:
            used = dpop_nonces.get(token_endpoint)
            proof = dpop.proof("POST", token_endpoint, nonce=used, algorithm=dpop_algorithm)
            request = request._replace(headers=tuple(request.headers) + (("DPoP", proof),))
        logger.debug("token request: grant_type=%s auth=%s endpoint=%s%s", grant_type,
                     client_auth.method, redact_url(token_endpoint),
                     " dpop" if dpop is not None else "")
        sent_at = clock()
        response = transport(request)
        if dpop is None:
            break
        dpop_nonces.remember(token_endpoint, response.header("DPoP-Nonce"))
        if attempt == 1 and response.status == 400 and \
                dpop_nonces.get(token_endpoint) not in (None, used) and \
                _error_code(response) == "use_dpop_nonce":
            logger.info("token endpoint %s asked for a DPoP nonce; retrying once with it",
                        redact_url(token_endpoint))
            continue
        break
    try:
        token = parse_token_response(response, token_types, issued_token_type,
                                     received_at=sent_at)
    except OAuthError as exc:
        logger.info("token request to %s failed: HTTP %s %s", redact_url(token_endpoint),
                    response.status, exc.error)
        raise _located(exc, token_endpoint, client_auth) from None
    if dpop is not None and token.token_type.lower() != "dpop" and not dpop_accept_bearer:
        from .errors import clean_peer_text

        raise TokenResponseError(
            "the token endpoint {} answered a DPoP token request with a {} token, which "
            "is not bound to the DPoP key; refusing it (RFC 9449 §5; pass "
            "dpop_accept_bearer=True to use unbound tokens)".format(
                redact_url(token_endpoint), clean_peer_text(token.token_type, 40)),
            status_code=response.status)
    logger.info("token issued by %s: grant_type=%s, HTTP %s, expires_in=%s",
                redact_url(token_endpoint), grant_type, response.status,
                "unknown" if token.expires_in is None else int(token.expires_in))
    return token


def _error_code(response: HttpResponse) -> Optional[str]:
    """The RFC 6749 §5.2 ``error`` of a response body, or None."""
    try:
        body = parse_json_object(response, "error response", TokenResponseError)
    except TokenResponseError:
        return None
    error = body.get("error")
    return error if isinstance(error, str) else None
