"""Compact JWS signing and verification, private key loading, JWK export and thumbprints.

Hand-written on ``cryptography`` primitives; no JWT library. Sections implemented:

* RFC 7515 §3.1, §5.1, §7.1 and §2: compact serialization, base64url without padding.
* RFC 7518 §3.3 (RS*), §3.4 (ES*, signature is R||S of fixed length, never DER),
  §3.5 (PS*, MGF1 with the same hash, salt length = digest size); RFC 8037 §3.1 (EdDSA,
  Ed25519 only).
* RFC 7518 §6.2 and §6.3 (EC and RSA JWKs: EC coordinates full length, RSA integers in
  the minimum number of octets), RFC 8037 §2 (OKP JWKs).
* RFC 7638 (JWK thumbprint, SHA-256), usable as a default ``kid`` and as DPoP ``jkt``.
* RFC 8725 §3.1 and §3.2: ``alg`` always matches the key type; ``none`` and HMAC are
  never produced (there is no shared-secret code path at all).

``cryptography`` is imported lazily, inside the functions that sign or load keys, so
``import mcpauth.jws`` works on a host without it (b64url helpers,
:func:`decode_unverified` and :func:`jwk_thumbprint` of a JWK dict stay usable). Every
cryptography call that takes a ``backend`` gets :func:`mcpauth._compat.backend`, which
cryptography 2.8 requires.

Loading an RSA private key is slow (about 30 ms: cryptography checks it), so load a key
once with :func:`load_private_key` and pass the resulting :class:`SigningKey` around.
"""

import base64
import binascii
import hashlib
import json
import math
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._compat import backend, require_cryptography
from .errors import ConfigurationError, InvalidKeyError
from .transport import loads_json

__all__ = [
    "ALGORITHMS",
    "JWSVerificationError",
    "SigningKey",
    "b64url_decode",
    "b64url_encode",
    "decode_unverified",
    "generate_private_key",
    "is_compact_jws",
    "jwk_thumbprint",
    "load_private_key",
    "numeric_date",
    "public_jwk",
    "sign",
    "sign_with",
    "verify",
]

# alg -> (kty, hash name, RSA padding or EC/OKP curve). RFC 7518 §3.1, RFC 8037 §3.1.
_ALGS = {
    "RS256": ("RSA", "SHA256", "PKCS1v15"),
    "RS384": ("RSA", "SHA384", "PKCS1v15"),
    "RS512": ("RSA", "SHA512", "PKCS1v15"),
    "PS256": ("RSA", "SHA256", "PSS"),
    "PS384": ("RSA", "SHA384", "PSS"),
    "PS512": ("RSA", "SHA512", "PSS"),
    "ES256": ("EC", "SHA256", "P-256"),
    "ES384": ("EC", "SHA384", "P-384"),
    "ES512": ("EC", "SHA512", "P-521"),
    "EdDSA": ("OKP", "", "Ed25519"),
}  # type: Dict[str, Tuple[str, str, str]]

#: Every ``alg`` this module signs and verifies.
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
)

_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")

# JWK "crv" -> (cryptography curve class name, octets per coordinate / per R and S).
# RFC 7518 §3.4: 32, 48 and 66 octets; §6.2.1.2: coordinates are full length.
_EC_CURVES = {
    "P-256": ("SECP256R1", 32),
    "P-384": ("SECP384R1", 48),
    "P-521": ("SECP521R1", 66),
}  # type: Dict[str, Tuple[str, int]]
_CURVE_BY_OPENSSL_NAME = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

# RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms."
_MIN_RSA_BITS = 2048
# Largest RSA modulus accepted: checking a private key costs about the cube of its size
# (16384 bits: seconds). Cloud KMSs offer RSA keys of at most 4096 bits; 8192 leaves room
# for keys made by hand.
_MAX_RSA_BITS = 8192

# RFC 7638 §3.2: the required members, hashed in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}  # type: Dict[str, Tuple[str, ...]]

_B64URL_RE = re.compile(r"\A[A-Za-z0-9_-]*\Z")
# RFC 7515 §7.1: BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature).
_COMPACT_JWS_RE = re.compile(r"\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")


class JWSVerificationError(ValueError):
    """A compact JWS failed :func:`verify`: bad format, refused ``alg``, or bad signature.

    Used by :mod:`mcpauth.testing` and the tests; the client never verifies tokens. The
    message never contains the token.
    """


# ---------------------------------------------------------------------------
# base64url (RFC 7515 §2, RFC 4648 §5)


def b64url_encode(data: bytes) -> str:
    """Encode bytes as base64url without ``=`` padding (RFC 7515 §2).

    Args:
        data: the octets to encode.

    Returns:
        The unpadded base64url text.

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode("ascii")


def b64url_decode(data: Union[str, bytes]) -> bytes:
    """Decode base64url text, with or without its ``=`` padding (RFC 7515 §2, RFC 4648 §5).

    Strict: the standard-alphabet characters ``+`` and ``/``, whitespace, an ``=``
    anywhere but at the end, an impossible length, and non-zero unused bits (a
    non-canonical encoding, RFC 4648 §3.5) are all refused.

    Args:
        data: the text, as str or ASCII bytes.

    Returns:
        The decoded octets.

    Raises:
        ValueError: ``data`` is not canonical base64url. The message does not quote it.
        TypeError: ``data`` is neither str nor bytes.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("invalid base64url: non-ASCII octets") from None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError("b64url_decode() needs str or bytes, not {}".format(
            type(data).__name__))
    stripped = text.rstrip("=")
    pad = len(text) - len(stripped)
    if not _B64URL_RE.match(stripped):
        raise ValueError("invalid base64url: character outside the URL-safe alphabet")
    if len(stripped) % 4 == 1:
        raise ValueError("invalid base64url: impossible length")
    if pad and (pad > 2 or (len(stripped) + pad) % 4):
        raise ValueError("invalid base64url: wrong padding")
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the checks above catch it
        raise ValueError("invalid base64url") from None
    if b64url_encode(raw) != stripped:
        raise ValueError("invalid base64url: non-zero unused bits")
    return raw


def _uint_to_b64(value: int, length: Optional[int] = None) -> str:
    # RFC 7518 §2 Base64urlUInt: "the minimum number of octets"; zero is one octet.
    # EC coordinates pass their full ``length`` instead (§6.2.1.2).
    if length is None:
        length = max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def _dumps(obj: Any) -> bytes:
    # Python 3.6 dicts have no guaranteed order: sort keys, no whitespace (PyJWT).
    return _ENCODER.encode(obj).encode("utf-8")


# What json.dumps(sort_keys=True, separators=(",", ":"), allow_nan=False) builds per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


# ---------------------------------------------------------------------------
# Keys


class SigningKey(object):
    """A loaded private key that signs JWS (RSA >= 2048 bits, P-256/384/521, Ed25519).

    Build one with :func:`load_private_key` (or :func:`generate_private_key`); the
    constructor takes an already-loaded ``cryptography`` private key object. Immutable.
    Its repr shows the key type, curve, size and RFC 7638 thumbprint, never key
    material, and it refuses to be pickled: a pickle would hold the private
    key unencrypted.

    Attributes:
        kty: ``"RSA"``, ``"EC"`` or ``"OKP"`` (RFC 7518 §6.1, RFC 8037 §2).
        curve: ``"P-256"``, ``"P-384"``, ``"P-521"``, ``"Ed25519"``, or None for RSA.
        key_size: the key size in bits (the modulus or the curve size).
        algorithms: the ``alg`` values this key can sign, the default first.
        default_algorithm: ``algorithms[0]``: RS256, ES256, ES384, ES512 or EdDSA.
        public_key: the ``cryptography`` public key object.
    """

    __slots__ = ("_key", "_public_key", "_kty", "_curve", "_key_size", "_algorithms",
                 "_public_jwk", "_thumbprint", "_params")

    def __init__(self, key: Any) -> None:
        """Wrap a ``cryptography`` private key object.

        Args:
            key: an ``RSAPrivateKey``, ``EllipticCurvePrivateKey`` or
                ``Ed25519PrivateKey``.

        Raises:
            InvalidKeyError: another type, a public key, RSA under 2048 bits, or an
                unsupported curve.
        """
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        curve: Optional[str] = None
        algorithms: Tuple[str, ...] = ()
        if isinstance(key, rsa.RSAPrivateKey):
            kty = "RSA"
            key_size = int(key.key_size)
            _check_rsa_size(key_size)
            algorithms = _RSA_ALGORITHMS
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            kty = "EC"
            curve = _jwk_curve_name(key.curve)
            key_size = int(key.curve.key_size)
            algorithms = tuple(a for a in ALGORITHMS if _ALGS[a][2] == curve)
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            kty, curve, key_size, algorithms = "OKP", "Ed25519", 256, ("EdDSA",)
        elif isinstance(key, _public_key_types()):
            raise InvalidKeyError("this is a public key; a private key is required")
        else:
            raise InvalidKeyError(
                "unsupported key type {}; RSA (>= 2048 bits), EC P-256/P-384/P-521 or "
                "Ed25519 private keys are supported".format(type(key).__name__))
        self._key = key
        self._public_key = key.public_key()
        self._kty = kty
        self._curve = curve
        self._key_size = key_size
        self._algorithms = algorithms
        self._public_jwk = _public_jwk_of(self._public_key)
        self._thumbprint = _thumbprint_of_jwk(self._public_jwk)
        # Per algorithm, the cryptography objects a signature needs (built once).
        self._params: Dict[str, Tuple[Any, int]] = {}

    @property
    def kty(self) -> str:
        return self._kty

    @property
    def curve(self) -> Optional[str]:
        return self._curve

    @property
    def key_size(self) -> int:
        return self._key_size

    @property
    def algorithms(self) -> Tuple[str, ...]:
        return self._algorithms

    @property
    def default_algorithm(self) -> str:
        return self._algorithms[0]

    @property
    def public_key(self) -> Any:
        return self._public_key

    def public_jwk(self) -> Dict[str, str]:
        """The public JWK: ``kty`` and the public members only (RFC 7517 §4, RFC 9449 §4.2).

        Returns:
            A new dict each call: RSA ``{e, kty, n}`` (minimal octets, RFC 7518 §6.3.1);
            EC ``{crv, kty, x, y}`` (full-length coordinates, §6.2.1); OKP
            ``{crv, kty, x}`` (RFC 8037 §2).
        """
        return dict(self._public_jwk)

    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 JWK thumbprint, base64url; usable as ``kid`` or DPoP ``jkt``.

        Returns:
            43 base64url characters.
        """
        return self._thumbprint

    def sign(self, signing_input: bytes, algorithm: str) -> bytes:
        """Sign the JWS signing input and return the raw JOSE signature (RFC 7515 §5.1).

        Args:
            signing_input: ``ASCII(BASE64URL(header) '.' BASE64URL(payload))``, or any
                bytes.
            algorithm: one of :attr:`algorithms`.

        Returns:
            The signature octets: RSA as is; ECDSA as R||S, each full length (RFC 7518
            §3.4), never DER; Ed25519 64 octets (RFC 8037 §3.1).

        Raises:
            ConfigurationError: ``algorithm`` is ``none``, HMAC or unknown.
            InvalidKeyError: ``algorithm`` does not match this key's type or curve.
        """
        if algorithm not in self._algorithms:  # which only holds algorithms that pass
            _check_algorithm(algorithm)        # _check_algorithm; else say which rule
            raise InvalidKeyError(
                "alg {} cannot be used with this {} key; it signs {}".format(
                    algorithm, self._describe_type(), ", ".join(self._algorithms)))
        data = bytes(signing_input)
        params = self._params.get(algorithm) or self._sign_params(algorithm)
        if self._kty == "OKP":
            return bytes(self._key.sign(data))
        if self._kty == "RSA":
            padding_, hash_alg = params[0]
            return bytes(self._key.sign(data, padding_, hash_alg))
        # cryptography returns DER; JOSE wants R||S, each left-padded to the curve
        # size: "MUST NOT be shortened to omit any leading zero octets" (RFC 7518 §3.4).
        r, s = _decode_dss_signature(self._key.sign(data, params[0]))
        size = params[1]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def _sign_params(self, algorithm: str) -> Tuple[Any, int]:
        """The padding and hash (RSA) or ECDSA object and R/S size (EC) for ``algorithm``."""
        kty, hash_name, param = _ALGS[algorithm]
        params: Tuple[Any, int] = (None, 0)
        if kty != "OKP":
            from cryptography.hazmat.primitives import hashes

            hash_alg = getattr(hashes, hash_name)()
            if kty == "RSA":
                params = ((_rsa_padding(param, hash_alg), hash_alg), 0)
            else:
                from cryptography.hazmat.primitives.asymmetric import ec

                params = (ec.ECDSA(hash_alg), _EC_CURVES[param][1])
        self._params[algorithm] = params
        return params

    def _describe_type(self) -> str:
        return self._kty if self._curve is None else "{} {}".format(self._kty, self._curve)

    def __repr__(self) -> str:
        return "SigningKey(kty={!r}, curve={!r}, key_size={}, thumbprint={!r})".format(
            self._kty, self._curve, self._key_size, self._thumbprint)

    def __reduce__(self) -> Any:
        raise TypeError("SigningKey refuses to be pickled: it holds a private key")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("SigningKey refuses to be pickled: it holds a private key")

    def __getstate__(self) -> Any:
        raise TypeError("SigningKey refuses to be pickled: it holds a private key")

    def __copy__(self) -> "SigningKey":
        return self  # immutable: a copy is the same key

    def __deepcopy__(self, memo: Any) -> "SigningKey":
        return self


def _public_key_types() -> Tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    return (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)


def _check_rsa_size(bits: int) -> None:
    if bits < _MIN_RSA_BITS:
        raise InvalidKeyError(
            "RSA key is {} bits; at least {} are required (RFC 7518 §3.3)".format(
                bits, _MIN_RSA_BITS))
    if bits > _MAX_RSA_BITS:
        raise InvalidKeyError("RSA key is {} bits; at most {} are accepted".format(
            bits, _MAX_RSA_BITS))


def _jwk_curve_name(curve: Any) -> str:
    name = _CURVE_BY_OPENSSL_NAME.get(getattr(curve, "name", ""))
    if name is None:
        raise InvalidKeyError(
            "unsupported elliptic curve {}; P-256, P-384 and P-521 are supported".format(
                getattr(curve, "name", "?")))
    return name


def _curve_object(crv: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return getattr(ec, _EC_CURVES[crv][0])()


_decode_dss = None  # type: Optional[Callable[[bytes], Tuple[int, int]]]  # on first use


def _decode_dss_signature(der: bytes) -> Tuple[int, int]:
    global _decode_dss
    if _decode_dss is None:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        _decode_dss = decode_dss_signature
    r, s = _decode_dss(der)
    return r, s


def _rsa_padding(kind: str, hash_alg: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import padding

    if kind == "PSS":
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
    return padding.PKCS1v15()


def _check_algorithm(algorithm: Any) -> str:
    """Refuse ``none``, HMAC and unknown algorithms (RFC 8725 §3.1, §3.2)."""
    if not isinstance(algorithm, str):
        raise ConfigurationError("alg must be a string, not {}".format(
            type(algorithm).__name__))
    if algorithm in _ALGS:
        return algorithm
    if algorithm.lower() == "none":
        raise ConfigurationError("alg 'none' is never produced or accepted (RFC 8725 §3.1)")
    if algorithm.upper().startswith("HS"):
        raise ConfigurationError(
            "HMAC alg {!r} is not supported: an asymmetric key never signs with a "
            "shared-secret algorithm (RFC 8725 §3.2)".format(algorithm[:10]))
    raise ConfigurationError("unsupported alg {!r}; supported: {}".format(
        algorithm[:20], ", ".join(ALGORITHMS)))


def _public_jwk_of(public_key: Any) -> Dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint_to_b64(numbers.n), "e": _uint_to_b64(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = _jwk_curve_name(public_key.curve)
        size = _EC_CURVES[crv][1]
        point = public_key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint_to_b64(point.x, size),
                "y": _uint_to_b64(point.y, size)}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    raise InvalidKeyError("unsupported key type {}".format(type(public_key).__name__))


def _thumbprint_of_jwk(jwk: Mapping[str, Any]) -> str:
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in _THUMBPRINT_MEMBERS:
        raise InvalidKeyError("JWK kty must be RSA, EC or OKP")
    members = {}
    for name in _THUMBPRINT_MEMBERS[kty]:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidKeyError("{} JWK lacks the string member {!r}".format(kty, name))
        members[name] = value
    # RFC 7638 §3: required members only, sorted, no whitespace, UTF-8, then SHA-256.
    try:
        canonical = json.dumps(members, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise InvalidKeyError("{} JWK has a member that is not valid Unicode text".format(
            kty)) from None
    return b64url_encode(hashlib.sha256(canonical).digest())


# ---------------------------------------------------------------------------
# Loading


def load_private_key(data: Any, password: Optional[Union[str, bytes]] = None) -> SigningKey:
    """Load a private key for signing from any of the usual forms.

    Accepted: a :class:`SigningKey` (returned as is); a ``cryptography`` RSA, EC or
    Ed25519 private key object; PEM text or bytes (PKCS#8, encrypted PKCS#8, PKCS#1
    ``RSA PRIVATE KEY``, SEC1 ``EC PRIVATE KEY``, and OpenSSH where cryptography >= 3.0
    reads it); DER bytes (PKCS#8, PKCS#1, SEC1); a private JWK as a dict or a JSON string
    (RFC 7517, RFC 7518 §6.2.2 and §6.3.2, RFC 8037 §2). An RSA JWK without its primes
    gets them recovered from ``n``, ``e`` and ``d``.

    Loading RSA costs about 30 ms (cryptography validates the key): load once, reuse.

    Args:
        data: the key, in one of the forms above. A dict is never modified.
        password: the password of an encrypted PEM or DER key, as str (UTF-8) or bytes.

    Returns:
        A :class:`SigningKey`.

    Raises:
        InvalidKeyError: unparseable data, a public key or certificate, a missing or
            wrong password, RSA under 2048 bits, an unsupported curve or key type, or a
            JWK whose private part does not match its public part. Messages never
            contain key material.
        MissingDependencyError: ``cryptography`` is not installed.
    """
    if isinstance(data, SigningKey):
        return data
    require_cryptography()
    if password is not None and not isinstance(password, (str, bytes)):
        raise InvalidKeyError("password must be str or bytes, not {}".format(
            type(password).__name__))
    try:
        pw = password.encode("utf-8") if isinstance(password, str) else password
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise InvalidKeyError("password is not valid Unicode text (a lone surrogate)") from None
    if isinstance(data, Mapping):
        _refuse_password(pw, "a JWK")
        return SigningKey(_private_key_from_jwk(data))
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("{"):
            _refuse_password(pw, "a JWK")
            return SigningKey(_private_key_from_jwk(_parse_jwk_json(text)))
        if "-----BEGIN" in text:
            try:
                raw = text.encode("ascii") + b"\n"
            except UnicodeEncodeError:
                raise InvalidKeyError("PEM key text contains non-ASCII characters") from None
            return SigningKey(_load_pem_private(raw, pw))
        raise InvalidKeyError(
            "a str key must be PEM text or a JWK JSON object (pass the file's contents, "
            "not its path)")
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        head = raw.lstrip()
        if head.startswith(b"{"):
            _refuse_password(pw, "a JWK")
            try:
                text = head.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidKeyError("JWK JSON is not valid UTF-8") from None
            return SigningKey(_private_key_from_jwk(_parse_jwk_json(text)))
        if b"-----BEGIN" in raw:
            return SigningKey(_load_pem_private(raw.strip() + b"\n", pw))
        return SigningKey(_load_der_private(raw, pw))
    if isinstance(data, _public_key_types()):
        raise InvalidKeyError("this is a public key; a private key is required")
    if type(data).__module__.startswith("cryptography."):
        _refuse_password(pw, "a key object")
        return SigningKey(data)  # a private key object, or a clear InvalidKeyError
    raise InvalidKeyError(
        "cannot load a private key from {}; pass PEM, DER, a JWK dict or JSON, or a "
        "cryptography private key".format(type(data).__name__))


def _refuse_password(password: Optional[bytes], what: str) -> None:
    if password is not None:
        raise InvalidKeyError("a password was given but {} is not encrypted".format(what))


def _parse_jwk_json(text: str) -> Mapping[str, Any]:
    try:
        obj = loads_json(text)
    except ValueError:
        raise InvalidKeyError("key text starts with '{' but is not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidKeyError("a JWK must be a JSON object")
    return obj


def _pem_label_problem(raw: bytes) -> Optional[str]:
    # Say what the PEM is when it is not a private key; never echo its body.
    labels = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", raw)
    if any(b"PRIVATE KEY" in label for label in labels):
        return None
    if any(b"PUBLIC KEY" in label for label in labels):
        return "this PEM is a public key; a private key is required"
    if any(b"CERTIFICATE" in label for label in labels):
        return "this PEM is a certificate; a private key is required"
    return "this PEM holds no private key"


def _load_pem_private(raw: bytes, password: Optional[bytes]) -> Any:
    problem = _pem_label_problem(raw)
    if problem is not None:
        raise InvalidKeyError(problem)
    from cryptography.hazmat.primitives import serialization

    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in raw:
        loader = getattr(serialization, "load_ssh_private_key", None)
        if loader is None:
            raise InvalidKeyError(
                "OpenSSH private keys need cryptography >= 3.0; convert the key with "
                "'ssh-keygen -p -m PKCS8'")
        return _call_loader(loader, raw, password, "OpenSSH")
    return _call_loader(serialization.load_pem_private_key, raw, password, "PEM")


def _load_der_private(raw: bytes, password: Optional[bytes]) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_der_public_key(raw, backend())
    except Exception:  # noqa: BLE001 - any failure: not a public key, go on
        pass
    else:
        raise InvalidKeyError("this DER is a public key; a private key is required")
    return _call_loader(serialization.load_der_private_key, raw, password, "DER")


def _call_loader(loader: Any, raw: bytes, password: Optional[bytes], fmt: str) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return loader(raw, password, backend())
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted" or
        # "Password was given but private key is not encrypted".
        if password is None:
            raise InvalidKeyError(
                "the {} key is encrypted and no password was given".format(fmt)) from None
        raise InvalidKeyError(
            "a password was given but the {} key is not encrypted".format(fmt)) from None
    except UnsupportedAlgorithm:
        raise InvalidKeyError(
            "the {} key uses an unsupported key type or cipher".format(fmt)) from None
    except AssertionError:
        # cryptography 3.2's OpenSSL bindings assert on some malformed keys (an EC
        # private key whose public point was altered) instead of raising ValueError.
        raise InvalidKeyError("could not load the {} key: malformed data".format(fmt)) from None
    except ValueError:
        # Covers "Bad decrypt. Incorrect password?" and malformed data alike; the
        # original message may quote OpenSSL internals, never shown.
        if password is not None:
            raise InvalidKeyError(
                "could not load the {} key: malformed data or wrong password".format(
                    fmt)) from None
        raise InvalidKeyError("could not load the {} key: malformed data".format(fmt)) from None


def _jwk_member(jwk: Mapping[str, Any], name: str, required: bool = True) -> Optional[bytes]:
    value = jwk.get(name)
    if value is None:
        if required:
            raise InvalidKeyError("{} JWK lacks the member {!r}".format(
                jwk.get("kty"), name))
        return None
    if not isinstance(value, str):
        raise InvalidKeyError("JWK member {!r} must be a base64url string".format(name))
    try:
        return b64url_decode(value)
    except ValueError:
        raise InvalidKeyError("JWK member {!r} is not valid base64url".format(name)) from None


def _jwk_int(jwk: Mapping[str, Any], name: str) -> int:
    raw = _jwk_member(jwk, name)
    assert raw is not None
    if not raw:
        raise InvalidKeyError("JWK member {!r} is empty".format(name))
    return int.from_bytes(raw, "big")


def _jwk_kty(jwk: Mapping[str, Any]) -> str:
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in _THUMBPRINT_MEMBERS:
        raise InvalidKeyError("JWK kty must be RSA, EC or OKP")
    return kty


def _jwk_crv(jwk: Mapping[str, Any], allowed: Sequence[str]) -> str:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in allowed:
        raise InvalidKeyError("unsupported JWK crv {!r}; supported: {}".format(
            crv if isinstance(crv, str) and len(crv) < 20 else type(crv).__name__,
            ", ".join(allowed)))
    return crv


def _private_key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    """A cryptography private key from a private JWK; the mapping is only read."""
    kty = _jwk_kty(jwk)
    if "d" not in jwk:
        raise InvalidKeyError("this JWK is a public key; a private key is required")
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if kty == "RSA":
        if "oth" in jwk:
            raise InvalidKeyError("multi-prime RSA JWKs ('oth') are not supported")
        n = _jwk_int(jwk, "n")
        e = _jwk_int(jwk, "e")
        _check_rsa_size(n.bit_length())
        if not 1 < e < n:  # RFC 8017 §3.1; also bounds the cost of pow() below
            raise InvalidKeyError("RSA JWK has an invalid public exponent")
        d = _jwk_int(jwk, "d")
        # One modular round trip catches a d that does not belong to (n, e) on every
        # cryptography version (2.8 does not check it), before the slow prime recovery.
        if not 1 < d < n or pow(pow(2, e, n), d, n) != 2:
            raise InvalidKeyError("RSA JWK is inconsistent: 'd' does not match n and e")
        try:
            if "p" in jwk and "q" in jwk:
                p, q = _jwk_int(jwk, "p"), _jwk_int(jwk, "q")
                if p * q != n:
                    raise InvalidKeyError("RSA JWK is inconsistent: p * q is not n")
            else:
                # RFC 7518 §6.3.2: the primes are optional. Recover them from n, e, d.
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            # CRT values are recomputed, not trusted from the JWK.
            numbers = rsa.RSAPrivateNumbers(
                p=p, q=q, d=d, dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q),
                iqmp=rsa.rsa_crt_iqmp(p, q), public_numbers=rsa.RSAPublicNumbers(e, n))
            return numbers.private_key(backend())
        except (ValueError, ZeroDivisionError):
            raise InvalidKeyError(
                "RSA JWK is inconsistent: its private members do not match n and e") from None
    if kty == "EC":
        crv = _jwk_crv(jwk, tuple(_EC_CURVES))
        curve = _curve_object(crv)
        raw_d = _jwk_member(jwk, "d")
        assert raw_d is not None
        if not raw_d or len(raw_d) > _EC_CURVES[crv][1]:
            raise InvalidKeyError("EC JWK member 'd' has the wrong length for " + crv)
        d = int.from_bytes(raw_d, "big")
        try:
            key = ec.derive_private_key(d, curve, backend())
        except ValueError:
            raise InvalidKeyError("EC JWK member 'd' is out of range for " + crv) from None
        if "x" in jwk or "y" in jwk:
            point = key.public_key().public_numbers()
            if _jwk_int(jwk, "x") != point.x or _jwk_int(jwk, "y") != point.y:
                raise InvalidKeyError("EC JWK is inconsistent: 'd' does not match 'x'/'y'")
        return key
    _jwk_crv(jwk, ("Ed25519",))
    raw_d = _jwk_member(jwk, "d")
    assert raw_d is not None
    if len(raw_d) != 32:
        raise InvalidKeyError("Ed25519 JWK member 'd' must be 32 octets")
    okp_key = _ed25519_call(ed25519.Ed25519PrivateKey.from_private_bytes, raw_d)
    if "x" in jwk:
        x = _jwk_member(jwk, "x")
        if b64url_decode(_public_jwk_of(okp_key.public_key())["x"]) != x:
            raise InvalidKeyError("OKP JWK is inconsistent: 'd' does not match 'x'")
    return okp_key


def _public_key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    """A cryptography public key from a JWK (private members are ignored)."""
    kty = _jwk_kty(jwk)
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if kty == "RSA":
        n, e = _jwk_int(jwk, "n"), _jwk_int(jwk, "e")
        _check_rsa_size(n.bit_length())
        try:
            return rsa.RSAPublicNumbers(e, n).public_key(backend())
        except ValueError:
            raise InvalidKeyError("RSA JWK has an invalid modulus or exponent") from None
    if kty == "EC":
        crv = _jwk_crv(jwk, tuple(_EC_CURVES))
        numbers = ec.EllipticCurvePublicNumbers(
            _jwk_int(jwk, "x"), _jwk_int(jwk, "y"), _curve_object(crv))
        try:
            return numbers.public_key(backend())
        except ValueError:
            raise InvalidKeyError("EC JWK point is not on the curve " + crv) from None
    _jwk_crv(jwk, ("Ed25519",))
    x = _jwk_member(jwk, "x")
    assert x is not None
    if len(x) != 32:
        raise InvalidKeyError("Ed25519 JWK member 'x' must be 32 octets")
    return _ed25519_call(ed25519.Ed25519PublicKey.from_public_bytes, x)


def _ed25519_call(func: Any, *args: Any) -> Any:
    # cryptography raises UnsupportedAlgorithm when its OpenSSL lacks Ed25519 (< 1.1.1).
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return func(*args)
    except UnsupportedAlgorithm:
        raise InvalidKeyError("Ed25519 is not supported by this cryptography build") from None
    except ValueError:
        raise InvalidKeyError("invalid Ed25519 key") from None


def _load_public_key(key: Any) -> Any:
    """A cryptography public key from anything :func:`verify` accepts."""
    if isinstance(key, SigningKey):
        return key.public_key
    require_cryptography()
    if isinstance(key, _public_key_types()):
        from cryptography.hazmat.primitives.asymmetric import rsa

        if isinstance(key, rsa.RSAPublicKey):
            _check_rsa_size(key.key_size)
        return key
    if isinstance(key, Mapping):
        return _public_key_from_jwk(key)
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("{"):
            return _public_key_from_jwk(_parse_jwk_json(text))
        key = text.encode("ascii", "replace")
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if raw.lstrip().startswith(b"{"):
            return _public_key_from_jwk(_parse_jwk_json(raw.decode("utf-8", "replace")))
        from cryptography.hazmat.primitives import serialization

        if b"PRIVATE KEY-----" in raw:
            return load_private_key(raw).public_key
        if b"-----BEGIN CERTIFICATE-----" in raw:
            from cryptography import x509

            try:
                cert = x509.load_pem_x509_certificate(raw, backend())
            except ValueError:
                raise InvalidKeyError("could not load the PEM certificate") from None
            return _load_public_key(cert.public_key())
        try:
            if b"-----BEGIN" in raw:
                public = serialization.load_pem_public_key(raw, backend())
            else:
                public = serialization.load_der_public_key(raw, backend())
        except (ValueError, TypeError):
            raise InvalidKeyError("could not load a public key from these bytes") from None
        except Exception:  # noqa: BLE001 - UnsupportedAlgorithm and friends
            raise InvalidKeyError("unsupported public key type") from None
        return _load_public_key(public)
    return SigningKey(key).public_key  # a private key object, or InvalidKeyError


def _public_kty(public_key: Any) -> Tuple[str, Optional[str]]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", _jwk_curve_name(public_key.curve)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "OKP", "Ed25519"
    raise InvalidKeyError("unsupported key type {}".format(type(public_key).__name__))


def generate_private_key(kty: str = "EC", *, curve: str = "P-256",
                         key_size: int = 2048) -> SigningKey:
    """Generate a new private key (for tests, demos and first-time setup).

    Args:
        kty: ``"EC"`` (default), ``"RSA"`` or ``"OKP"`` (always Ed25519).
        curve: for EC, ``"P-256"``, ``"P-384"`` or ``"P-521"``. For OKP only the default
            or ``"Ed25519"`` is accepted.
        key_size: for RSA, the modulus size in bits; at least 2048 (RFC 7518 §3.3).

    Returns:
        A new :class:`SigningKey`.

    Raises:
        ConfigurationError: unknown ``kty`` or ``curve``.
        InvalidKeyError: RSA ``key_size`` under 2048.
        MissingDependencyError: ``cryptography`` is not installed.
    """
    require_cryptography()
    if kty == "EC":
        if curve not in _EC_CURVES:
            raise ConfigurationError("EC curve must be P-256, P-384 or P-521")
        from cryptography.hazmat.primitives.asymmetric import ec

        return SigningKey(ec.generate_private_key(_curve_object(curve), backend()))
    if kty == "RSA":
        if not isinstance(key_size, int):
            raise ConfigurationError("key_size must be an int")
        _check_rsa_size(key_size)
        from cryptography.hazmat.primitives.asymmetric import rsa

        return SigningKey(rsa.generate_private_key(65537, key_size, backend()))
    if kty == "OKP":
        if curve not in ("P-256", "Ed25519"):
            raise ConfigurationError("OKP keys are always Ed25519")
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return SigningKey(_ed25519_call(ed25519.Ed25519PrivateKey.generate))
    raise ConfigurationError("kty must be 'EC', 'RSA' or 'OKP'")


# ---------------------------------------------------------------------------
# JWK export and thumbprints


def public_jwk(key: Any) -> Dict[str, str]:
    """The public JWK of a key: ``kty`` and its public members only (RFC 7517 §4).

    A public JWK "MUST NOT contain a private key" (RFC 9449 §4.2), so ``d`` and the
    other private members never appear; neither do ``alg``, ``kid`` or ``use``.

    Args:
        key: a :class:`SigningKey`, a ``cryptography`` private or public key object, a
            JWK dict or JSON string (private or public), or PEM/DER bytes.

    Returns:
        A new dict: RSA ``{e, kty, n}`` with minimal-octet integers (RFC 7518 §6.3.1),
        EC ``{crv, kty, x, y}`` with full-length coordinates (§6.2.1), OKP
        ``{crv, kty, x}`` (RFC 8037 §2).

    Raises:
        InvalidKeyError: the key cannot be read or is of an unsupported type or size.
        MissingDependencyError: ``cryptography`` is not installed.
    """
    if isinstance(key, SigningKey):
        return key.public_jwk()
    return _public_jwk_of(_load_public_key(key))


def jwk_thumbprint(key: Any) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of a key.

    Only the required members are hashed (RFC 7638 §3.2: RSA ``e, kty, n``; EC
    ``crv, kty, x, y``; OKP ``crv, kty, x`` per RFC 8037 §2), so ``alg``, ``kid``,
    ``use`` and private members never change it. A JWK dict is hashed as given and needs
    no ``cryptography``.

    Args:
        key: a :class:`SigningKey`, a ``cryptography`` private or public key object, or
            a JWK (dict or JSON string, public or private).

    Returns:
        43 base64url characters.

    Raises:
        InvalidKeyError: a JWK lacks a required member or has an unknown ``kty``, or the
            key object is unsupported.
    """
    if isinstance(key, SigningKey):
        return key.thumbprint()
    if isinstance(key, str) and key.strip().startswith("{"):
        key = _parse_jwk_json(key.strip())
    if isinstance(key, Mapping):
        return _thumbprint_of_jwk(key)
    return _thumbprint_of_jwk(public_jwk(key))


# ---------------------------------------------------------------------------
# Compact JWS


def sign(payload: Union[Mapping[str, Any], bytes], key: Any,
         algorithm: Optional[str] = None,
         headers: Optional[Mapping[str, Any]] = None) -> str:
    """Sign a payload and return a JWS in compact serialization (RFC 7515 §3.1, §5.1).

    The protected header is ``{"alg": algorithm}`` plus ``headers``; both it and a
    claims mapping are serialised as JSON with sorted keys and no whitespace.

    Args:
        payload: a claims mapping (serialised as JSON), or the exact payload bytes.
        key: a :class:`SigningKey`, or anything :func:`load_private_key` accepts (loaded
            on every call: pass a SigningKey when signing often).
        algorithm: the JWS ``alg``; defaults to the key's ``default_algorithm``
            (RS256, ES256, ES384, ES512 or EdDSA).
        headers: extra protected header parameters such as ``typ`` and ``kid``. Never
            modified. An ``alg`` here must equal ``algorithm``.

    Returns:
        ``BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature)``.

    Raises:
        ConfigurationError: ``none``, HMAC or unknown ``alg``, or ``headers`` tries to
            set a different ``alg``, or the header or claims are not JSON-serialisable.
        InvalidKeyError: the key cannot be loaded, or ``alg`` does not match its type
            (RFC 8725 §3.1: the algorithm always matches the key).
        TypeError: ``payload`` or ``headers`` has the wrong type.
        MissingDependencyError: ``cryptography`` is not installed.
    """
    if algorithm is not None:
        _check_algorithm(algorithm)
    payload_bytes = _payload_bytes(payload, headers)
    signing_key = load_private_key(key)
    if algorithm is None:
        algorithm = signing_key.default_algorithm
    signing_input = _signing_input(payload_bytes, algorithm, headers)
    signature = signing_key.sign(signing_input.encode("ascii"), algorithm)
    return signing_input + "." + b64url_encode(signature)


def _claims_signer(key: "SigningKey", algorithm: str,
                   headers: Optional[Mapping[str, Any]] = None) -> Callable[[Any], str]:
    """What :func:`sign` does for claims mappings, for one key, ``alg`` and header, with
    the header checked and encoded once (a client signs an assertion per token request;
    RFC 7523 §3). :meth:`SigningKey.sign` still checks ``alg`` against the key each time."""
    prefix = _signing_input(b"", algorithm, headers)  # BASE64URL(header) '.'
    sign = key.sign

    def sign_claims(claims: Any) -> str:
        signing_input = prefix + b64url_encode(_payload_bytes(claims, None))
        return signing_input + "." + b64url_encode(sign(signing_input.encode("ascii"),
                                                        algorithm))
    return sign_claims


def _payload_bytes(payload: Any, headers: Any) -> bytes:
    if headers is not None and type(headers) is not dict and not isinstance(headers, Mapping):
        raise TypeError("headers must be a mapping, not {}".format(type(headers).__name__))
    if type(payload) is not dict:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return bytes(payload)
        if not isinstance(payload, Mapping):
            raise TypeError("payload must be a claims mapping or bytes, not {}".format(
                type(payload).__name__))
        payload = dict(payload)
    try:
        return _dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            "claims are not JSON-serialisable: {}".format(type(exc).__name__)) from None


def _signing_input(payload_bytes: bytes, algorithm: str,
                   headers: Optional[Mapping[str, Any]]) -> str:
    """``BASE64URL(header) '.' BASE64URL(payload)`` with ``alg`` set (RFC 7515 §5.1)."""
    memo_key = None
    if headers is None or (type(headers) is dict and len(headers) <= 4 and all(
            type(v) is str for v in headers.values())):
        # The encoded header of an assertion repeats: build it once per alg + string values.
        memo_key = (algorithm, tuple(sorted(headers.items())) if headers else ())
        encoded = _HEADER_MEMO.get(memo_key)
        if encoded is not None:
            return encoded + "." + b64url_encode(payload_bytes)
    header: Dict[str, Any] = {}
    if headers is not None:
        header.update(headers)  # a copy: the caller's mapping is never touched
    if "alg" in header and header["alg"] != algorithm:
        raise ConfigurationError(
            "headers['alg'] may not differ from the signing algorithm {}".format(algorithm))
    header["alg"] = algorithm
    try:
        header_bytes = _dumps(header)
    except (TypeError, ValueError):
        raise ConfigurationError("JWS header values are not JSON-serialisable") from None
    encoded = b64url_encode(header_bytes)
    if memo_key is not None:
        if len(_HEADER_MEMO) >= 64:
            _HEADER_MEMO.clear()
        _HEADER_MEMO[memo_key] = encoded
    return encoded + "." + b64url_encode(payload_bytes)


_HEADER_MEMO: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], str] = {}


def sign_with(payload: Union[Mapping[str, Any], bytes], signer: Any, algorithm: str,
              headers: Optional[Mapping[str, Any]] = None, public_key: Any = None) -> str:
    """Sign with a key held elsewhere (an HSM, a cloud KMS, a signing service).

    ``signer(signing_input) -> signature`` receives the JWS signing input (RFC 7515
    §5.1) and returns the signature octets. ECDSA signatures are used in the JOSE form,
    R||S each of the curve's length (RFC 7518 §3.4); a DER ``ECDSA-Sig-Value``, which
    most KMS and PKCS#11 interfaces return, is converted to it. With ``public_key`` the
    finished JWS is verified before it is returned, so a signer that uses another key or
    another algorithm fails here rather than at the authorization server.

    Args:
        payload: a claims mapping or the exact payload bytes, as for :func:`sign`.
        signer: ``callable(bytes) -> bytes``.
        algorithm: the JWS ``alg`` the signer produces (no default: it cannot be read
            from a key that is not here).
        headers: extra protected header parameters, as for :func:`sign`.
        public_key: the signer's public key (JWK dict or anything :func:`verify` takes),
            or None to skip verification (the signature's length is still checked).

    Returns:
        The compact JWS.

    Raises:
        ConfigurationError: ``none``, HMAC or unknown ``alg``; the signer returned
            something other than bytes.
        InvalidKeyError: the signature has the wrong length or form for ``algorithm``,
            or does not verify with ``public_key``.
        TypeError: ``signer`` is not callable, or ``payload`` / ``headers`` has the
            wrong type.
    """
    _check_algorithm(algorithm)
    if not callable(signer):
        raise TypeError("signer must be a callable(bytes) -> bytes, not {}".format(
            type(signer).__name__))
    signing_input = _signing_input(_payload_bytes(payload, headers), algorithm, headers)
    raw = signer(signing_input.encode("ascii"))
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ConfigurationError("the signing callable returned {}, not the signature "
                                 "bytes".format(type(raw).__name__))
    candidates = _jose_signatures(bytes(raw), algorithm)
    if not candidates:
        raise InvalidKeyError(
            "the signing callable returned {} bytes, which is not an {} signature{}".format(
                len(raw), algorithm, " (R||S of {} bytes, or DER)".format(
                    2 * _EC_CURVES[_ALGS[algorithm][2]][1])
                if _ALGS[algorithm][0] == "EC" else ""))
    for signature in candidates:
        token = signing_input + "." + b64url_encode(signature)
        if public_key is None:
            return token
        try:
            verify(token, public_key, [algorithm])
            return token
        except JWSVerificationError:
            continue
    raise InvalidKeyError(
        "the signature from the signing callable does not verify with the declared "
        "public key: the signer uses another key, or does not sign {}".format(algorithm))


def _jose_signatures(raw: bytes, algorithm: str) -> List[bytes]:
    """The JOSE signatures ``raw`` may be for ``algorithm``, most likely first."""
    kty, _, param = _ALGS[algorithm]
    if kty == "OKP":
        return [raw] if len(raw) == 64 else []  # RFC 8037 §3.1
    if kty == "RSA":
        return [raw] if len(raw) * 8 >= _MIN_RSA_BITS else []
    size = _EC_CURVES[param][1]
    out = [raw] if len(raw) == 2 * size else []
    converted = _der_ecdsa_to_jose(raw, size)
    if converted is not None:
        out.append(converted)
    return out


def _der_ecdsa_to_jose(data: bytes, size: int) -> Optional[bytes]:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` (RFC 3279 §2.2.3) to R||S, or None."""

    def length(pos: int) -> Tuple[int, int]:
        first = data[pos]
        if first < 0x80:
            return first, pos + 1
        if first == 0x81 and pos + 1 < len(data) and data[pos + 1] >= 0x80:
            return data[pos + 1], pos + 2
        raise ValueError("unsupported DER length")

    try:
        if data[0] != 0x30:
            return None
        total, pos = length(1)
        if pos + total != len(data):
            return None
        values = []
        for _ in range(2):
            if data[pos] != 0x02:
                return None
            n, pos = length(pos + 1)
            octets = data[pos:pos + n]
            if n == 0 or len(octets) != n or octets[0] & 0x80 or n > size + 1:
                return None
            values.append(int.from_bytes(octets, "big"))
            pos += n
        if pos != len(data) or any(v == 0 or v >= 1 << (8 * size) for v in values):
            return None
        return values[0].to_bytes(size, "big") + values[1].to_bytes(size, "big")
    except (IndexError, ValueError):
        return None


def _split(token: Any) -> Tuple[str, str, str]:
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("compact JWS must be ASCII") from None
    if not isinstance(token, str):
        raise TypeError("token must be str, not {}".format(type(token).__name__))
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("compact JWS must have three dot-separated parts, not {}".format(
            len(parts)))
    return parts[0], parts[1], parts[2]


def _json_object_part(part: str, what: str) -> Dict[str, Any]:
    try:
        obj = loads_json(b64url_decode(part).decode("utf-8"))
    except ValueError:
        # base64url, UTF-8, JSON and nesting-depth errors are all ValueError.
        raise ValueError("JWS {} is not base64url-encoded JSON".format(what)) from None
    if not isinstance(obj, dict):
        raise ValueError("JWS {} is not a JSON object".format(what))
    return obj


def is_compact_jws(token: Any) -> bool:
    """True when ``token`` has the shape of a compact JWS (RFC 7515 §7.1).

    Three dot-separated parts of base64url characters (the header and payload
    non-empty), nothing else: no whitespace, no line breaks, no non-ASCII. The parts
    are not decoded; :func:`decode_unverified` does that.

    Args:
        token: any value.

    Returns:
        Whether it is a ``str`` of that shape.
    """
    return isinstance(token, str) and _COMPACT_JWS_RE.match(token) is not None


def numeric_date(value: Any) -> Optional[float]:
    """A JWT NumericDate claim (``exp``, ``iat``, ``nbf``; RFC 7519 §2) as a float.

    Args:
        value: the claim as decoded from JSON.

    Returns:
        The value as a finite float, or None when it is not a JSON number (booleans
        included), is infinite or NaN (Python's ``json`` accepts ``Infinity``), or is
        an integer too large for a float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def decode_unverified(token: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Read a compact JWT's header and claims WITHOUT verifying the signature.

    For inspecting tokens the client forwards but cannot verify (ID-JAG ``typ``,
    ``exp``); never a trust decision.

    Args:
        token: a compact JWS whose payload is a JSON object (RFC 7519 §7.2).

    Returns:
        ``(header, claims)`` as new dicts.

    Raises:
        ValueError: not three base64url parts with JSON-object header and payload, or
            not a str or bytes at all (None included). The message never contains the
            token.
    """
    if not isinstance(token, (str, bytes)):
        raise ValueError("a compact JWS must be str, not {}".format(type(token).__name__))
    header_part, payload_part, _ = _split(token)
    return (_json_object_part(header_part, "header"),
            _json_object_part(payload_part, "payload"))


def verify(token: str, key: Any, algorithms: Sequence[str]) -> bytes:
    """Verify a compact JWS and return its payload (RFC 7515 §5.2).

    The header ``alg`` must be listed in ``algorithms`` and match the key's type and
    curve (RFC 8725 §3.1). ECDSA signatures must be R||S of exactly the curve's length
    (RFC 7518 §3.4): a DER signature fails. Headers with ``crit`` are refused (RFC 7515
    §4.1.11: no extensions are understood). Used by :mod:`mcpauth.testing` and tests;
    the client itself never verifies tokens.

    Args:
        token: the compact JWS.
        key: the verification key: a ``cryptography`` public (or private) key object,
            a :class:`SigningKey`, a JWK dict or JSON string, or PEM/DER (public key,
            certificate or private key).
        algorithms: the ``alg`` values accepted, e.g. ``["ES256"]``; not a str.

    Returns:
        The payload octets.

    Raises:
        JWSVerificationError: bad format, a refused ``alg``, an ``alg`` that does not
            match the key, or a signature that does not verify. The message never
            contains the token.
        ConfigurationError: ``algorithms`` is empty or lists ``none``, HMAC or an
            unknown algorithm.
        InvalidKeyError: the key cannot be used (unparseable, unsupported, RSA < 2048).
        TypeError: ``algorithms`` is a str, or ``token`` is not str.
    """
    if isinstance(algorithms, (str, bytes)):
        raise TypeError("algorithms must be a list of alg names, not {}".format(
            type(algorithms).__name__))
    allowed = frozenset(_check_algorithm(a) for a in algorithms)
    if not allowed:
        raise ConfigurationError("algorithms must not be empty")
    public_key = _load_public_key(key)
    key_kty, key_curve = _public_kty(public_key)

    try:
        header_part, payload_part, signature_part = _split(token)
        header = _json_object_part(header_part, "header")
        payload = b64url_decode(payload_part)
        signature = b64url_decode(signature_part)
    except ValueError as exc:
        raise JWSVerificationError(str(exc)) from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise JWSVerificationError("JWS alg is missing or not among the accepted algorithms")
    if "crit" in header:
        raise JWSVerificationError("JWS header has 'crit' extensions; none are understood")
    kty, hash_name, param = _ALGS[alg]
    if kty != key_kty or (kty != "RSA" and param != key_curve):
        raise JWSVerificationError("JWS alg {} does not match the {} key".format(
            alg, key_kty if key_curve is None else key_kty + " " + key_curve))

    from cryptography.exceptions import InvalidSignature

    signing_input = (header_part + "." + payload_part).encode("ascii")
    try:
        if kty == "OKP":
            public_key.verify(signature, signing_input)
        else:
            from cryptography.hazmat.primitives import hashes

            hash_alg = getattr(hashes, hash_name)()
            if kty == "RSA":
                public_key.verify(signature, signing_input, _rsa_padding(param, hash_alg),
                                  hash_alg)
            else:
                from cryptography.hazmat.primitives.asymmetric import ec
                from cryptography.hazmat.primitives.asymmetric.utils import (
                    encode_dss_signature,
                )

                size = _EC_CURVES[param][1]
                if len(signature) != 2 * size:
                    raise JWSVerificationError(
                        "{} signature must be {} octets of R||S (RFC 7518 §3.4)".format(
                            alg, 2 * size))
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                public_key.verify(encode_dss_signature(r, s), signing_input,
                                  ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise JWSVerificationError("JWS signature does not verify") from None
    except ValueError as exc:
        if isinstance(exc, JWSVerificationError):
            raise
        raise JWSVerificationError("JWS signature is malformed") from None
    return payload


# ---------------------------------------------------------------------------
# Key shape without loading (no cryptography import)

_OID_RSA = bytes.fromhex("2a864886f70d010101")      # rsaEncryption (RFC 8017 A.1)
_OID_EC = bytes.fromhex("2a8648ce3d0201")           # id-ecPublicKey (RFC 5480 §2.1.1)
_OID_ED25519 = bytes.fromhex("2b6570")              # id-Ed25519 (RFC 8410 §3)
_OID_CURVES = {bytes.fromhex("2a8648ce3d030107"): "P-256",   # RFC 5480 §2.1.1.1
               bytes.fromhex("2b81040022"): "P-384",
               bytes.fromhex("2b81040023"): "P-521"}
_PEM_KINDS = {b"PRIVATE KEY": "pkcs8", b"RSA PRIVATE KEY": "pkcs1",
              b"EC PRIVATE KEY": "sec1"}


def _der(data: bytes, pos: int, tag: int) -> Tuple[int, int]:
    """The (start, end) of the contents of the DER element of ``tag`` at ``pos``."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise ValueError("unexpected DER element")
    length, pos = data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return pos, pos + length


def _rsa_bits_pkcs1(data: bytes, pos: int = 0) -> int:
    start, _ = _der(data, pos, 0x30)               # RSAPrivateKey ::= SEQUENCE {
    v_start, v_end = _der(data, start, 0x02)       #   version, modulus, ...
    n_start, n_end = _der(data, v_end, 0x02)
    modulus = data[n_start:n_end].lstrip(b"\0")
    return len(modulus) * 8 - (8 - modulus[0].bit_length()) if modulus else 0


def _shape_of_der(der: bytes, kind: Optional[str]) -> Optional[Tuple[str, Optional[str], int]]:
    """(kty, curve, RSA bits) of an unencrypted PKCS#8, PKCS#1 or SEC1 key, or None."""
    for form in ((kind,) if kind else ("pkcs8", "pkcs1", "sec1")):
        try:
            if form == "pkcs1":
                return ("RSA", None, _rsa_bits_pkcs1(der))
            start, end = _der(der, 0, 0x30)
            if end != len(der):
                continue
            _, pos = _der(der, start, 0x02)                     # version
            if form == "sec1":
                _, pos = _der(der, pos, 0x04)                   # privateKey
                c_start, _ = _der(der, pos, 0xA0)               # [0] parameters
                o_start, o_end = _der(der, c_start, 0x06)
                curve = _OID_CURVES.get(der[o_start:o_end])
                return ("EC", curve, 0) if curve else None
            a_start, a_end = _der(der, pos, 0x30)               # AlgorithmIdentifier
            o_start, o_end = _der(der, a_start, 0x06)
            oid = der[o_start:o_end]
            k_start, _ = _der(der, a_end, 0x04)                 # privateKey
            if oid == _OID_RSA:
                return ("RSA", None, _rsa_bits_pkcs1(der, k_start))
            if oid == _OID_ED25519:
                return ("OKP", "Ed25519", 0)
            if oid == _OID_EC:
                c_start, c_end = _der(der, o_end, 0x06)
                curve = _OID_CURVES.get(der[c_start:c_end])
                return ("EC", curve, 0) if curve else None
            return None
        except (ValueError, IndexError):
            continue
    return None


def _shape_of_jwk(jwk: Mapping[str, Any]) -> Optional[Tuple[str, Optional[str], int]]:
    def member(name: str) -> bytes:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise ValueError(name)
        return b64url_decode(value)

    try:
        kty, crv = jwk.get("kty"), jwk.get("crv")
        member("d")
        if kty == "RSA":
            member("e")
            modulus = member("n").lstrip(b"\0")
            return ("RSA", None, len(modulus) * 8 - (8 - modulus[0].bit_length())
                    if modulus else 0)
        if kty == "EC" and crv in _EC_CURVES:
            member("x")
            member("y")
            return ("EC", crv, 0)
        if kty == "OKP" and crv == "Ed25519":
            member("x")
            return ("OKP", "Ed25519", 0)
    except Exception:  # anything odd: can't tell, so the caller loads (and checks) it now
        return None
    return None


def key_algorithms(data: Any) -> Optional[Tuple[str, ...]]:
    """The ``alg`` values a private key can sign, read from its structure without loading it.

    A cheap check for keys that may never be used (a cached token means nothing is
    signed): PEM armour, DER structure, the algorithm and curve identifiers (RFC 5208,
    RFC 5915, RFC 8017, RFC 8410) or the JWK members (RFC 7518 §6), and the RSA modulus
    size (RFC 7518 §3.3). Returns None when it cannot tell (encrypted, OpenSSH, key
    objects, anything unusual): load such a key with :func:`load_private_key` now, which
    validates it fully. A key this accepts is still fully loaded and validated before it
    signs anything.

    Raises:
        InvalidKeyError: an RSA modulus under 2048 bits.
    """
    shape: Optional[Tuple[str, Optional[str], int]] = None
    if isinstance(data, Mapping):
        shape = _shape_of_jwk(data)
    elif isinstance(data, (str, bytes)):
        raw = data.encode("latin-1", "replace") if isinstance(data, str) else bytes(data)
        text = raw.strip()
        if text.startswith(b"{"):
            try:
                parsed = loads_json(text.decode("utf-8"))
            except Exception:
                return None
            shape = _shape_of_jwk(parsed) if isinstance(parsed, dict) else None
        elif text.startswith(b"-----BEGIN "):
            label = text[11:text.find(b"-----", 11)]
            kind = _PEM_KINDS.get(label)
            lines = text.splitlines()
            if (kind is None or len(lines) < 3 or lines[-1].strip() != b"-----END " + label
                    + b"-----" or any(b":" in line for line in lines[1:-1])):
                return None  # encrypted (Proc-Type headers), other labels: load it now
            try:
                der = binascii.a2b_base64(b"".join(line.strip() for line in lines[1:-1]))
            except (binascii.Error, ValueError):
                return None
            shape = _shape_of_der(der, kind)
        elif isinstance(data, bytes) and raw[:1] == b"\x30":
            shape = _shape_of_der(raw, None)
    if shape is None:
        return None
    kty, curve, bits = shape
    if kty == "RSA":
        _check_rsa_size(bits)
        return _RSA_ALGORITHMS
    if kty == "OKP":
        return ("EdDSA",)
    return tuple(a for a in ALGORITHMS if _ALGS[a][2] == curve)


def unloaded_thumbprint(data: Any) -> Optional[str]:
    """The RFC 7638 thumbprint of an unencrypted RSA private key (PKCS#8 or PKCS#1 PEM/DER,
    or a JWK), read from its structure without loading it; None for anything else.

    The same value :meth:`SigningKey.thumbprint` gives once the key is loaded: the public
    members ``n`` and ``e`` as minimal octets (RFC 7518 §6.3.1).
    """
    if key_algorithms(data) != _RSA_ALGORITHMS:
        return None
    try:
        if isinstance(data, Mapping):
            n, e = b64url_decode(data["n"]), b64url_decode(data["e"])
        else:
            raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
            text = raw.strip()
            if text.startswith(b"{"):
                return None
            if text.startswith(b"-----BEGIN "):
                lines = text.splitlines()
                raw = binascii.a2b_base64(b"".join(line.strip() for line in lines[1:-1]))
                pkcs1 = b"RSA PRIVATE KEY" in lines[0]
            else:
                pkcs1 = False
            pos = 0
            if not pkcs1:
                try:
                    start, _ = _der(raw, 0, 0x30)
                    _, pos = _der(raw, start, 0x02)          # version
                    _, pos = _der(raw, pos, 0x30)            # AlgorithmIdentifier
                    pos, _ = _der(raw, pos, 0x04)            # privateKey: RSAPrivateKey
                except ValueError:
                    pos = 0                                   # a bare PKCS#1 DER key
            start, _ = _der(raw, pos, 0x30)
            _, v_end = _der(raw, start, 0x02)
            n_start, n_end = _der(raw, v_end, 0x02)
            e_start, e_end = _der(raw, n_end, 0x02)
            n, e = raw[n_start:n_end], raw[e_start:e_end]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return _thumbprint_of_jwk({"kty": "RSA", "n": b64url_encode(n.lstrip(b"\0")),
                               "e": b64url_encode(e.lstrip(b"\0"))})
