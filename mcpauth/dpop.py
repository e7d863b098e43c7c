"""DPoP: sender-constrained access tokens (RFC 9449; MCP extension SEP-1932).

A DPoP-bound token works only together with a proof signed by the private key that
asked for it, so a stolen token alone is useless. This module is the pure core:

* :class:`DPoPKey`: a private key (generated in memory, or anything
  :func:`mcpauth.jws.load_private_key` accepts) and the ``alg`` it signs proofs with.
* :meth:`DPoPKey.proof` / :func:`make_proof`: one proof JWT (RFC 9449 §4.2): header
  ``typ`` ``dpop+jwt``, ``alg`` and the public ``jwk`` only; claims ``jti`` (128 random
  bits), ``htm``, ``htu`` (the request URI without query and fragment), ``iat``, and
  ``ath`` (SHA-256 of the access token, §4.2) and ``nonce`` (§8, §9) when given.
* :func:`verify_proof`: the §4.3 checks a server makes (used by :mod:`mcpauth.testing`;
  ``jti`` replay is the caller's to track).
* :class:`NonceStore`: the latest ``DPoP-Nonce`` per server origin (§8.2, §9).

The providers (``dpop_key=``) use these; callers with flows of their own can too::

    key = DPoPKey.generate()                     # ES256, in memory
    headers = {"DPoP": key.proof("POST", token_endpoint)}
    ...
    headers = {"Authorization": "DPoP " + access_token,
               "DPoP": key.proof("GET", url, access_token=access_token)}
"""

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

from . import _fork, jws
from .errors import ConfigurationError, MCPAuthError

__all__ = [
    "DPOP_ALGORITHMS",
    "DPoPKey",
    "DPoPProofError",
    "NonceStore",
    "access_token_hash",
    "content_digest",
    "htu_of",
    "make_proof",
    "verify_proof",
]

#: Asymmetric JWS algorithms usable for proofs (RFC 9449 §4.2: never ``none`` nor a
#: symmetric one), in this library's order of preference.
DPOP_ALGORITHMS = ("ES256", "EdDSA", "ES384", "ES512", "PS256", "RS256", "PS384",
                   "PS512", "RS384", "RS512")

#: RFC 9449 §4.2 ``typ`` of a proof.
PROOF_TYP = "dpop+jwt"

# What DPoPKey.generate() makes for each algorithm.
_GENERATE = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", ""), "RS384": ("RSA", ""), "RS512": ("RSA", ""),
    "PS256": ("RSA", ""), "PS384": ("RSA", ""), "PS512": ("RSA", ""),
}

# Members of a JWK that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
_PRIVATE_JWK_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "abcdefghijklmnopqrstuvwxyz")
# RFC 9449 §8.1: nonce = 1*NQCHAR; NQCHAR = %x21 / %x23-5B / %x5D-7E.
_NQCHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('"\\')


def _is_nonce(value: Any) -> bool:
    """Whether ``value`` is a syntactically valid DPoP nonce (RFC 9449 §8.1)."""
    return isinstance(value, str) and bool(value) and set(value) <= _NQCHARS


class DPoPProofError(MCPAuthError, ValueError):
    """A DPoP proof failed an RFC 9449 §4.3 check (raised by :func:`verify_proof`).

    ``error`` is the OAuth error code a server would answer with: ``invalid_dpop_proof``,
    or ``use_dpop_nonce`` when the nonce is missing or stale. The message never contains
    the proof or the token.
    """

    def __init__(self, message: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(message)
        self.error = error


def htu_of(url: str) -> str:
    """The ``htu`` for a request to ``url``: the URI without query and fragment (§4.2).

    Raises:
        ConfigurationError: ``url`` is not an absolute http(s) URL.
    """
    if not isinstance(url, str):
        raise ConfigurationError("the DPoP htu must be a URL string, not {}".format(
            type(url).__name__))
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError("the DPoP htu is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("the DPoP htu must be an absolute http(s) URL")
    # The target URI has no userinfo (RFC 9110 §4.2.4, §7.1): a password in the URL
    # must not ride along in every proof.
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _normalized_htu(url: str) -> Tuple[str, str, Optional[int], str]:
    """RFC 3986 §6.2.2/§6.2.3 normal form of an htu, for comparison (RFC 9449 §4.3)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port
    if port == {"https": 443, "http": 80}.get(scheme):
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII(access_token))) (RFC 9449 §4.2).

    Raises:
        ConfigurationError: the token is not an ASCII string.
    """
    if not isinstance(access_token, str):
        raise ConfigurationError("the access token must be a string")
    try:
        raw = access_token.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigurationError("the access token is not ASCII") from None
    return jws.b64url_encode(hashlib.sha256(raw).digest())


def content_digest(body: bytes) -> str:
    """The ``content_digest`` claim for a request body: ``sha-256=:`` + standard base64 of
    SHA-256 of the body octets + ``:`` (the MCP DPoP extension, SEP-1932, in the RFC 9530
    Content-Digest format)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(bytes(body)).digest()).decode(
        "ascii") + ":"


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or not method or not set(method) <= _TOKEN_CHARS:
        raise ConfigurationError("the DPoP htm must be an HTTP method token such as 'POST'")
    return method


class DPoPKey(object):
    """A DPoP private key and the algorithm its proofs use.

    Args:
        key: anything :func:`mcpauth.jws.load_private_key` accepts (PEM, DER, a private
            JWK, a ``cryptography`` key, a :class:`~mcpauth.jws.SigningKey`), or another
            DPoPKey.
        algorithm: the proof ``alg``; by default chosen per authorization server from
            its ``dpop_signing_alg_values_supported`` (see :meth:`algorithm_for`), else
            the key's default (ES256 for P-256, EdDSA for Ed25519, PS256 for RSA).

    The repr shows the algorithm and the RFC 7638 thumbprint (the ``cnf.jkt`` tokens
    are bound to), never key material; pickling is refused.

    Raises:
        InvalidKeyError: the key cannot be loaded.
        ConfigurationError: ``algorithm`` is not an asymmetric algorithm this key signs.
    """

    __slots__ = ("_key", "_algorithm", "_headers", "_thumbprint", "_htus", "_ath")

    _key: jws.SigningKey
    _algorithm: Optional[str]

    def __init__(self, key: Any, algorithm: Optional[str] = None) -> None:
        if isinstance(key, DPoPKey):
            if algorithm is None:
                algorithm = key.algorithm
            key = key.signing_key
        signing_key = key if isinstance(key, jws.SigningKey) else jws.load_private_key(key)
        if algorithm is not None and (algorithm not in DPOP_ALGORITHMS
                                      or algorithm not in signing_key.algorithms):
            raise ConfigurationError(
                "DPoP algorithm {!r} cannot be used with this {} key (it signs {})".format(
                    algorithm, signing_key.kty, ", ".join(
                        a for a in DPOP_ALGORITHMS if a in signing_key.algorithms)))
        self._key = signing_key
        self._algorithm = algorithm
        self._thumbprint = signing_key.thumbprint()
        # The protected header per alg, serialised once: only the claims change per proof.
        self._headers: Dict[str, str] = {}
        # Per-request work that repeats (bounded): URL -> JSON of its htu, last ath.
        self._htus: Dict[Tuple[str, str], str] = {}
        self._ath: Tuple[Optional[str], str] = (None, "")

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> "DPoPKey":
        """A new in-memory key for ``algorithm`` (ES256 by default; EdDSA, ES384, ES512,
        RS256/PS256 and the other RSA algorithms with a 2048-bit key).

        Raises:
            ConfigurationError: an unknown or symmetric algorithm.
            MissingDependencyError: ``cryptography`` is not installed.
        """
        spec = _GENERATE.get(algorithm) if isinstance(algorithm, str) else None
        if spec is None:
            raise ConfigurationError("DPoP algorithm must be one of {}".format(
                ", ".join(DPOP_ALGORITHMS)))
        kty, curve = spec
        if kty == "RSA":
            key = jws.generate_private_key("RSA", key_size=2048)
        elif kty == "OKP":
            key = jws.generate_private_key("OKP")
        else:
            key = jws.generate_private_key("EC", curve=curve)
        return cls(key, algorithm)

    @property
    def algorithm(self) -> Optional[str]:
        """The configured ``alg``, or None when it is chosen per server."""
        return self._algorithm

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint of the public key: the ``cnf.jkt`` of bound tokens."""
        return self._thumbprint

    @property
    def signing_key(self) -> jws.SigningKey:
        """The underlying :class:`~mcpauth.jws.SigningKey`."""
        return self._key

    def public_jwk(self) -> Dict[str, str]:
        """The public JWK put in every proof (no private member, RFC 9449 §4.2)."""
        return self._key.public_jwk()

    def algorithm_for(self, supported: Optional[Sequence[str]] = None) -> str:
        """The ``alg`` to use with a server advertising ``supported`` (RFC 9449 §5.1
        ``dpop_signing_alg_values_supported``; None: no preference).

        Raises:
            ConfigurationError: the server lists algorithms and this key signs none of them.
        """
        if self._algorithm is not None:
            if supported is not None and self._algorithm not in supported:
                raise ConfigurationError(
                    "the server accepts DPoP proofs signed with {}, not {}".format(
                        ", ".join(supported) or "no algorithm", self._algorithm))
            return self._algorithm
        mine = [a for a in DPOP_ALGORITHMS if a in self._key.algorithms]
        if supported is None:
            default = self._key.default_algorithm
            return "PS256" if default == "RS256" else default
        for alg in mine:
            if alg in supported:
                return alg
        raise ConfigurationError(
            "the server accepts DPoP proofs signed with {}; this {} key signs {}".format(
                ", ".join(supported) or "no algorithm", self._key.kty, ", ".join(mine)))

    def proof(self, method: str, url: str, access_token: Optional[str] = None,
              nonce: Optional[str] = None, *, algorithm: Optional[str] = None,
              iat: Optional[int] = None, body: Optional[bytes] = None) -> str:
        """A fresh DPoP proof for one HTTP request (RFC 9449 §4.2).

        Args:
            method: the request's method exactly as sent (``htm``), e.g. ``"POST"``.
            url: the request URL; query and fragment are dropped for ``htu``.
            access_token: the token the request carries (adds ``ath``); None for a
                token request.
            nonce: the server's latest ``DPoP-Nonce`` (adds ``nonce``).
            algorithm: the ``alg`` (default: :meth:`algorithm_for` with no preference).
            iat: the issue time (default: now).
            body: the request body octets, for requests to an MCP server: adds
                ``content_digest`` (SEP-1932); never for a token request.

        Returns:
            The compact JWS for the ``DPoP`` header. Every call has a new ``jti``.

        Raises:
            ConfigurationError: a bad method, URL, token, nonce or algorithm.
        """
        alg = algorithm or self.algorithm_for(None)
        header = self._headers.get(alg)
        if header is None:
            if alg not in DPOP_ALGORITHMS or alg not in self._key.algorithms:
                raise ConfigurationError("DPoP algorithm {!r} cannot be used with this "
                                         "key".format(alg))
            header = jws.b64url_encode(json.dumps(
                {"typ": PROOF_TYP, "alg": alg, "jwk": self._key.public_jwk()},
                separators=(",", ":"), sort_keys=True).encode("ascii"))
            self._headers[alg] = header
        # The claims JSON is written directly: htm and htu are encoded once per URL.
        request_part = self._htus.get((method, url)) \
            if isinstance(url, str) and isinstance(method, str) else None
        if request_part is None:
            request_part = ',"htm":{},"htu":{},"iat":'.format(
                json.dumps(_check_method(method)), json.dumps(htu_of(url)))
            if len(self._htus) >= 256:
                self._htus.clear()
            self._htus[(method, url)] = request_part
        # 128 bits of randomness (RFC 9449 §4.2 asks for at least 96).
        claims = '{"jti":"' + jws.b64url_encode(secrets.token_bytes(16)) + '"' + \
            request_part + str(int(time.time()) if iat is None else int(iat))
        if access_token is not None:
            last_token, ath = self._ath
            if access_token != last_token:
                ath = access_token_hash(access_token)
                self._ath = (access_token, ath)
            claims += ',"ath":"' + ath + '"'
        if nonce is not None:
            if not _is_nonce(nonce):
                raise ConfigurationError("a DPoP nonce must be a non-empty string of "
                                         "RFC 9449 §8.1 NQCHAR characters")
            claims += ',"nonce":' + json.dumps(nonce)
        if body is not None:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise ConfigurationError("a DPoP content digest needs the body as bytes")
            claims += ',"content_digest":"' + content_digest(body) + '"'
        signing_input = header + "." + jws.b64url_encode((claims + "}").encode("ascii"))
        return signing_input + "." + jws.b64url_encode(
            self._key.sign(signing_input.encode("ascii"), alg))

    def __repr__(self) -> str:
        return "DPoPKey(kty={!r}, algorithm={!r}, thumbprint={!r})".format(
            self._key.kty, self._algorithm, self._thumbprint)

    def __reduce__(self) -> Any:
        raise TypeError("DPoPKey holds a private key and cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()


def make_proof(key: Any, method: str, url: str, access_token: Optional[str] = None,
               nonce: Optional[str] = None, algorithm: Optional[str] = None) -> str:
    """One DPoP proof (RFC 9449 §4.2) for ``method`` ``url``; see :meth:`DPoPKey.proof`.

    ``key`` is a :class:`DPoPKey` or anything it accepts (loading a key is slow: keep a
    DPoPKey when making many proofs).
    """
    dpop_key = key if isinstance(key, DPoPKey) else DPoPKey(key, algorithm)
    return dpop_key.proof(method, url, access_token, nonce, algorithm=algorithm)


def verify_proof(proof: Any, method: str, url: str, *, access_token: Optional[str] = None,
                 nonce: Optional[str] = None, jkt: Optional[str] = None,
                 algorithms: Sequence[str] = DPOP_ALGORITHMS, now: Optional[float] = None,
                 max_age: float = 300.0, leeway: float = 5.0,
                 body: Optional[bytes] = None) -> Dict[str, Any]:
    """Check a DPoP proof as RFC 9449 §4.3 and §7.1 describe.

    Args:
        proof: the ``DPoP`` header value (exactly one header: the caller checks).
        method, url: the request it came with.
        access_token: the token presented with it; then ``ath`` must match. With None,
            the proof must have no ``ath`` (a token request).
        nonce: the nonce the server expects, or None when it requires none.
        jkt: the token's ``cnf.jkt``; then the proof's key must have that thumbprint.
        algorithms: accepted ``alg`` values (asymmetric only).
        now: the current time (default ``time.time()``).
        max_age: how old ``iat`` may be, in seconds; leeway: how far in the future.
        body: the request body; then a ``content_digest`` claim must match it (SEP-1932).

    Returns:
        The claims, plus ``"jkt"``: the thumbprint of the proof's key.

    Raises:
        DPoPProofError: any check failed (``error`` says which OAuth code to answer).
    """
    if not isinstance(proof, str) or not jws.is_compact_jws(proof):
        raise DPoPProofError("the DPoP proof is not a compact JWS")
    try:
        header, claims = jws.decode_unverified(proof)
    except ValueError:
        raise DPoPProofError("the DPoP proof is not a well-formed JWT") from None
    if header.get("typ") != PROOF_TYP:
        raise DPoPProofError("the DPoP proof's typ is not dpop+jwt")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in DPOP_ALGORITHMS or alg not in algorithms:
        raise DPoPProofError("the DPoP proof's alg is not an accepted asymmetric algorithm")
    jwk = header.get("jwk")
    if not isinstance(jwk, Mapping):
        raise DPoPProofError("the DPoP proof has no jwk header")
    if _PRIVATE_JWK_MEMBERS.intersection(jwk):
        raise DPoPProofError("the DPoP proof's jwk contains a private key")
    try:
        jws.verify(proof, dict(jwk), [alg])
        thumbprint = jws.jwk_thumbprint(dict(jwk))
    except (jws.JWSVerificationError, MCPAuthError, ValueError, TypeError):
        raise DPoPProofError("the DPoP proof's signature does not verify with its jwk") \
            from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise DPoPProofError("the DPoP proof has no jti")
    if claims.get("htm") != method:
        raise DPoPProofError("the DPoP proof's htm does not match the request method")
    htu = claims.get("htu")
    try:
        # Query, fragment and userinfo are never part of an htu (§4.2; RFC 9110 §4.2.4).
        if not isinstance(htu, str) or _normalized_htu(htu) != _normalized_htu(htu_of(url)) \
                or urlsplit(htu).query or urlsplit(htu).fragment or "@" in urlsplit(htu).netloc:
            raise DPoPProofError("the DPoP proof's htu does not match the request URI")
    except (ValueError, ConfigurationError):
        raise DPoPProofError("the DPoP proof's htu does not match the request URI") from None
    iat = jws.numeric_date(claims.get("iat"))
    current = time.time() if now is None else now
    if iat is None or iat < current - max_age or iat > current + leeway:
        raise DPoPProofError("the DPoP proof's iat is outside the accepted window")
    if access_token is None:
        if "ath" in claims:
            raise DPoPProofError("the DPoP proof has ath but no access token was presented")
    elif claims.get("ath") != access_token_hash(access_token):
        raise DPoPProofError("the DPoP proof's ath does not match the access token")
    if nonce is not None and claims.get("nonce") != nonce:
        raise DPoPProofError("the DPoP proof lacks the current nonce", "use_dpop_nonce")
    if body is not None and claims.get("content_digest") != content_digest(body):
        raise DPoPProofError("the DPoP proof's content_digest does not match the body")
    if jkt is not None and thumbprint != jkt:
        raise DPoPProofError("the DPoP proof's key is not the one the token is bound to",
                             "invalid_token")
    out = dict(claims)
    out["jkt"] = thumbprint
    return out


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, lowercased, the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if scheme == "https" else 80
    return "{}://{}:{}".format(scheme, (parts.hostname or "").lower(), port)


class NonceStore(object):
    """The latest ``DPoP-Nonce`` of each server origin (RFC 9449 §8.2, §9).

    Nonces are opaque, "only accepted by the server that issued them" (§9), so they are
    kept per origin, and replaced whenever a response from that origin carries a new one.
    Bounded: the least recently set origins are forgotten beyond ``max_origins``.
    """

    def __init__(self, max_origins: int = 256) -> None:
        self._nonces: "OrderedDict[str, str]" = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_origins
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def get(self, url: str) -> Optional[str]:
        """The nonce to put in the next proof for ``url``, or None."""
        if not self._nonces:
            return None  # the common case: no server has asked for nonces
        _fork.check()  # Python 3.6 has no fork hook
        with self._lock:
            return self._nonces.get(origin_of(url))

    def remember(self, url: str, nonce: Any) -> bool:
        """Record ``nonce`` (a ``DPoP-Nonce`` header value) for ``url``'s origin.

        Returns True when it differs from the stored one. Values that are not
        ``1*NQCHAR`` (RFC 9449 §8.1: printable ASCII without space, ``"`` and ``\\``) or
        are longer than 1024 characters are ignored.
        """
        if not _is_nonce(nonce) or len(nonce) > 1024:
            return False
        origin = origin_of(url)
        _fork.check()
        with self._lock:
            changed = bool(self._nonces.get(origin) != nonce)
            self._nonces[origin] = nonce
            self._nonces.move_to_end(origin)
            while len(self._nonces) > self._max:
                self._nonces.popitem(last=False)
            return changed
