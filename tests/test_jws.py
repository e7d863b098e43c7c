"""Tests for mcpauth.jws.

RFC vectors (tests/vectors/, first line of each file cites its section):
RFC 7515 A.2 (RS256, reproduced byte for byte from the RFC's exact signing input),
RFC 7515 A.3 (ES256, verified), RFC 7520 §4.1 (RS256, reproduced through sign()),
RFC 7638 §3.1 and RFC 9449 §6.1 (thumbprints), RFC 8037 A (Ed25519).

Signatures made by mcpauth.jws are checked by ``independent_verify`` below, written
directly on cryptography primitives and not on ``jws.verify``. Tests that need
cryptography take the ``crypto`` fixture (pytest.importorskip), so this file also runs,
minus those, in an environment without it.
"""

import base64
import copy
import json
import os
import pickle
import subprocess
import sys
import types

import pytest

from mcpauth import jws
from mcpauth.errors import (
    ConfigurationError,
    InvalidKeyError,
    MCPAuthError,
    MissingDependencyError,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VECTORS = os.path.join(HERE, "vectors")

try:
    import cryptography  # noqa: F401

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - the nocrypto environment
    HAVE_CRYPTOGRAPHY = False


def load_vector(name):
    """A vector file: one ``# RFC ...`` citation line, then JSON."""
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        citation = f.readline()
        assert citation.startswith("# RFC "), name
        return json.loads(f.read())


def b64d(text):
    """Independent base64url decoder (stdlib only, not jws.b64url_decode)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64int(text):
    return int.from_bytes(b64d(text), "big")


A2 = load_vector("rfc7515_a2_rs256.json")
A3 = load_vector("rfc7515_a3_es256.json")
RFC7520 = load_vector("rfc7520_4_1_rs256.json")
RFC7638 = load_vector("rfc7638_3_1_rsa_thumbprint.json")
RFC9449 = load_vector("rfc9449_6_1_ec_thumbprint.json")
RFC8037 = load_vector("rfc8037_a_ed25519.json")

CLAIMS = {"iss": "client-1", "sub": "client-1", "aud": "https://as.example/token",
          "jti": "4f1c", "iat": 1700000000, "exp": 1700000060}

ES_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
KEY_FOR_ALG = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA",
               "PS384": "RSA", "PS512": "RSA", "ES256": "P-256", "ES384": "P-384",
               "ES512": "P-521", "EdDSA": "Ed25519"}


# ---------------------------------------------------------------------------
# Fixtures and the independent verifier


@pytest.fixture(scope="module")
def crypto():
    """cryptography modules, or a skip when it is not installed."""
    pytest.importorskip("cryptography")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import (
        ec, ed25519, padding, rsa, utils, x25519,
    )

    return types.SimpleNamespace(
        InvalidSignature=InvalidSignature, backend=default_backend(), hashes=hashes,
        serialization=serialization, ec=ec, ed25519=ed25519, padding=padding, rsa=rsa,
        utils=utils, x25519=x25519)


def rsa_from_jwk(crypto, jwk):
    """Build an RSA key from the RFC's own JWK members with cryptography only."""
    rsa = crypto.rsa
    p, q, d = b64int(jwk["p"]), b64int(jwk["q"]), b64int(jwk["d"])
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(b64int(jwk["e"]), b64int(jwk["n"])))
    return numbers.private_key(crypto.backend)


@pytest.fixture(scope="module")
def key_objects(crypto):
    """cryptography private key objects; RSA is the RFC 7515 A.2 key (no RSA keygen)."""
    ec = crypto.ec
    return {
        "RSA": rsa_from_jwk(crypto, A2["jwk"]),
        "P-256": ec.generate_private_key(ec.SECP256R1(), crypto.backend),
        "P-384": ec.generate_private_key(ec.SECP384R1(), crypto.backend),
        "P-521": ec.generate_private_key(ec.SECP521R1(), crypto.backend),
        "Ed25519": crypto.ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def signing_keys(key_objects):
    return {name: jws.load_private_key(obj) for name, obj in key_objects.items()}


@pytest.fixture(scope="module")
def generated_rsa(crypto):
    """The one RSA key generated in this module (keygen is slow)."""
    return jws.generate_private_key("RSA")


def independent_verify(crypto, token, public_key):
    """Verify a compact JWS on cryptography primitives alone; return the payload.

    RFC 7518 §3.3 (RS*), §3.4 (ES*: R||S of fixed length), §3.5 (PS*: MGF1 with the
    same hash, salt = digest length), RFC 8037 §3.1 (EdDSA).
    """
    header_b64, payload_b64, sig_b64 = token.split(".")
    assert "=" not in token
    header = json.loads(b64d(header_b64).decode("utf-8"))
    alg = header["alg"]
    signature = b64d(sig_b64)
    data = (header_b64 + "." + payload_b64).encode("ascii")
    hashes = crypto.hashes
    if alg == "EdDSA":
        assert len(signature) == 64
        public_key.verify(signature, data)
    else:
        digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[alg[2:]]()
        if alg.startswith("RS"):
            public_key.verify(signature, data, crypto.padding.PKCS1v15(), digest)
        elif alg.startswith("PS"):
            pss = crypto.padding.PSS(mgf=crypto.padding.MGF1(digest),
                                     salt_length=digest.digest_size)
            public_key.verify(signature, data, pss, digest)
        else:
            size = ES_SIZES[alg]
            assert len(signature) == 2 * size
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public_key.verify(crypto.utils.encode_dss_signature(r, s), data,
                              crypto.ec.ECDSA(digest))
    return b64d(payload_b64)


def private_jwk(crypto, obj):
    """An independent private JWK of a cryptography key (RFC 7518 §6, RFC 8037 §2)."""
    if isinstance(obj, crypto.rsa.RSAPrivateKey):
        nums = obj.private_numbers()

        def u(v):
            return b64e(v.to_bytes((v.bit_length() + 7) // 8, "big"))
        return {"kty": "RSA", "n": u(nums.public_numbers.n), "e": u(nums.public_numbers.e),
                "d": u(nums.d), "p": u(nums.p), "q": u(nums.q), "dp": u(nums.dmp1),
                "dq": u(nums.dmq1), "qi": u(nums.iqmp)}
    if isinstance(obj, crypto.ec.EllipticCurvePrivateKey):
        size = (obj.curve.key_size + 7) // 8
        nums = obj.private_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[
            obj.curve.name]
        return {"kty": "EC", "crv": crv,
                "x": b64e(nums.public_numbers.x.to_bytes(size, "big")),
                "y": b64e(nums.public_numbers.y.to_bytes(size, "big")),
                "d": b64e(nums.private_value.to_bytes(size, "big"))}
    ser = crypto.serialization
    d = obj.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    x = obj.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64e(x), "d": b64e(d)}


def pem_body_lines(pem):
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


# ---------------------------------------------------------------------------
# base64url (RFC 7515 §2) - pure, no cryptography needed


class TestBase64url:
    def test_round_trip_every_length_and_no_padding(self):
        for n in range(0, 70):
            data = os.urandom(n)
            text = jws.b64url_encode(data)
            assert "=" not in text and "+" not in text and "/" not in text
            assert text == b64e(data)
            assert jws.b64url_decode(text) == data
            assert jws.b64url_decode(text.encode("ascii")) == data

    def test_accepts_correct_padding(self):
        assert jws.b64url_decode("QQ==") == b"A"
        assert jws.b64url_decode("QUI=") == b"AB"
        assert jws.b64url_decode("QQ") == b"A"

    def test_rfc7515_a2_payload_with_crlf(self):
        assert jws.b64url_encode(A2["payload"].encode("utf-8")) == A2["payload_b64"]
        assert b"\r\n" in jws.b64url_decode(A2["payload_b64"])

    @pytest.mark.parametrize("bad", [
        "ab+c", "ab/c", "ab c", "abc\n", " abc", "a=bc", "QQ=", "QQ===", "Q", "QUJDR",
        "QR", "QUJ", "\u00e9abc", b"ab\xffc", "abcd\t",
    ])
    def test_rejects_non_base64url(self, bad):
        with pytest.raises(ValueError) as info:
            jws.b64url_decode(bad)
        assert "invalid base64url" in str(info.value)

    def test_wrong_types(self):
        with pytest.raises(TypeError):
            jws.b64url_decode(12)
        with pytest.raises(TypeError):
            jws.b64url_encode("text")

    def test_uint_minimal_octets(self):
        # RFC 7518 §2 Base64urlUInt: minimum octets; 65537 is "AQAB", zero is "AA".
        assert jws._uint_to_b64(65537) == "AQAB"
        assert jws._uint_to_b64(0) == "AA"
        assert jws._uint_to_b64(255) == "_w"
        assert jws._uint_to_b64(256) == "AQA"
        assert jws._uint_to_b64(1, 32) == "A" * 42 + "E"


# ---------------------------------------------------------------------------
# RFC 7638 thumbprints of JWK dicts - pure


class TestThumbprintOfJwk:
    def test_rfc7638_section_3_1(self):
        jwk = RFC7638["jwk"]
        assert "alg" in jwk and "kid" in jwk
        assert jws.jwk_thumbprint(jwk) == RFC7638["thumbprint"]
        bare = {k: jwk[k] for k in ("kty", "n", "e")}
        assert jws.jwk_thumbprint(bare) == RFC7638["thumbprint"]
        extra = dict(bare, use="sig", alg="PS256", kid="other", x5t="abc")
        assert jws.jwk_thumbprint(extra) == RFC7638["thumbprint"]
        assert jws.jwk_thumbprint(json.dumps(jwk)) == RFC7638["thumbprint"]

    def test_rfc9449_ec_key(self):
        assert jws.jwk_thumbprint(RFC9449["jwk"]) == RFC9449["thumbprint"]

    def test_rfc8037_a3_okp_key(self):
        public = {k: RFC8037["jwk"][k] for k in ("kty", "crv", "x")}
        assert jws.jwk_thumbprint(public) == RFC8037["thumbprint"]
        assert jws.jwk_thumbprint(RFC8037["jwk"]) == RFC8037["thumbprint"]  # d ignored

    def test_private_members_do_not_change_it(self):
        assert jws.jwk_thumbprint(A2["jwk"]) == jws.jwk_thumbprint(
            {k: A2["jwk"][k] for k in ("kty", "n", "e")})

    def test_input_dict_untouched(self):
        jwk = dict(RFC7638["jwk"])
        before = copy.deepcopy(jwk)
        jws.jwk_thumbprint(jwk)
        assert jwk == before

    @pytest.mark.parametrize("jwk", [
        {"kty": "RSA", "n": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": "AA"},
        {"kty": "oct", "k": "c2VjcmV0"}, {"n": "x", "e": "AQAB"},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
    ])
    def test_incomplete_jwk_refused(self, jwk):
        with pytest.raises(InvalidKeyError) as info:
            jws.jwk_thumbprint(jwk)
        assert "c2VjcmV0" not in str(info.value)


# ---------------------------------------------------------------------------
# decode_unverified - pure


class TestDecodeUnverified:
    def test_rfc7515_a2(self):
        header, claims = jws.decode_unverified(A2["jws"])
        assert header == {"alg": "RS256"}
        assert claims == {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}

    @pytest.mark.parametrize("token", [
        "", "abc", "a.b", "a.b.c.d",
        A2["protected_b64"] + "." + A2["payload_b64"],
        "!!!." + A2["payload_b64"] + ".sig",
        b64e(b"[1,2]") + "." + A2["payload_b64"] + ".c2ln",
        A2["protected_b64"] + "." + b64e(b'"just a string"') + ".c2ln",
        A2["protected_b64"] + "." + b64e(b"not json at all") + ".c2ln",
        b64e(b"\xff\xfe") + "." + A2["payload_b64"] + ".c2ln",
    ])
    def test_malformed(self, token):
        with pytest.raises(ValueError) as info:
            jws.decode_unverified(token)
        if len(token) > 8:
            assert token not in str(info.value)
            for part in token.split("."):
                if len(part) > 8:
                    assert part not in str(info.value)


    @pytest.mark.parametrize("where", ["header", "payload"])
    def test_json_nested_past_the_recursion_limit(self, where):
        """A RecursionError from json escaped before; it is a ValueError like any bad JSON."""
        deep = b64e(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}")
        parts = [A2["protected_b64"], A2["payload_b64"], "c2ln"]
        parts[0 if where == "header" else 1] = deep
        with pytest.raises(ValueError) as info:
            jws.decode_unverified(".".join(parts))
        assert "not base64url-encoded JSON" in str(info.value)


def test_deeply_nested_jwk_text_is_an_invalid_key(crypto):
    with pytest.raises(InvalidKeyError) as info:
        jws.load_private_key('{"kty":' + "[" * 100000 + "]" * 100000 + "}")
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("token, expected", [
    (A2["jws"], True),
    ("e30.e30.", True),                              # empty signature: still the shape
    ("e30.e30.c2ln", True),
    ("a-_.b-_.c-_", True),
    ("e30..c2ln", False),
    (".e30.c2ln", False),
    ("e30.e30", False),
    ("e30.e30.c2ln.c2ln", False),
    ("e30.e30.c2ln=", False),                        # padding is not base64url (RFC 7515 §2)
    ("e30.e30.c2ln\n", False),
    ("e30.e30.c2\r\nln", False),
    (" e30.e30.c2ln", False),
    ("e30.e30.c2l\u00f1", False),
    ("e30.e30.c2ln!", False),
    ("\uff45\uff13\uff10.e30.c2ln", False),           # fullwidth letters are not ASCII
    (b"e30.e30.c2ln", False),
    (None, False),
    (42, False),
])
def test_is_compact_jws(token, expected):
    assert jws.is_compact_jws(token) is expected


@pytest.mark.parametrize("value, expected", [
    (1300819380, 1300819380.0),
    (1300819380.5, 1300819380.5),
    (0, 0.0),
    (-5, -5.0),
    (True, None),
    (False, None),
    ("1300819380", None),
    (None, None),
    ([1], None),
    (float("inf"), None),
    (float("-inf"), None),
    (float("nan"), None),
    (10 ** 400, None),                                # float() raises OverflowError
    (-10 ** 400, None),
])
def test_numeric_date(value, expected):
    assert jws.numeric_date(value) == expected


def test_numeric_date_of_json_values():
    claims = json.loads('{"a": -Infinity, "b": NaN, "c": 1' + "0" * 400 + ', "d": 17}')
    assert [jws.numeric_date(claims[k]) for k in "abcd"] == [None, None, None, 17.0]


# ---------------------------------------------------------------------------
# Import hygiene


def test_import_does_not_import_cryptography():
    """``import mcpauth.jws`` alone, and its pure helpers, leave cryptography unimported."""
    code = "\n".join([
        "import sys",
        "import mcpauth.jws as j",
        "assert j.b64url_decode(j.b64url_encode(b'x')) == b'x'",
        "j.jwk_thumbprint({'kty': 'EC', 'crv': 'P-256', 'x': 'AA', 'y': 'AA'})",
        "j.decode_unverified({!r})".format(A2["jws"]),
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography')",
        "assert not loaded, loaded",
        "import importlib.util",
        "if importlib.util.find_spec('cryptography') is None:",
        "    print('no-cryptography')",
        "else:",
        "    j.generate_private_key('EC')",
        "    assert 'cryptography' in sys.modules",
        "    print('lazy-ok')",
    ])
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # stderr apart: cryptography warns on its import under Python 3.6 and 3.7.
    out = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, env=env,
                                  stderr=subprocess.PIPE, universal_newlines=True)
    assert out.strip() in ("lazy-ok", "no-cryptography")


@pytest.mark.skipif(HAVE_CRYPTOGRAPHY, reason="only runs where cryptography is missing")
def test_without_cryptography_signing_raises_missing_dependency():
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(MissingDependencyError):
        jws.load_private_key(pem)
    with pytest.raises(MissingDependencyError):
        jws.sign({"a": 1}, pem)
    with pytest.raises(MissingDependencyError):
        jws.generate_private_key()
    with pytest.raises(MissingDependencyError):
        jws.verify(A2["jws"], RFC7638["jwk"], ["RS256"])
    assert jws.jwk_thumbprint(RFC7638["jwk"]) == RFC7638["thumbprint"]


def test_public_names():
    assert sorted(jws.__all__) == jws.__all__
    for name in jws.__all__:
        assert hasattr(jws, name)
    assert jws.ALGORITHMS == ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                              "ES256", "ES384", "ES512", "EdDSA")
    assert issubclass(jws.JWSVerificationError, ValueError)
    assert not issubclass(jws.JWSVerificationError, MCPAuthError)


# ---------------------------------------------------------------------------
# RFC vectors


@pytest.mark.crypto
class TestRFCVectors:
    def test_rfc7515_a2_rs256_byte_for_byte(self, crypto):
        """RFC 7515 A.2: PKCS#1 v1.5 is deterministic; sign the RFC's signing input."""
        signing_input = (A2["protected_b64"] + "." + A2["payload_b64"]).encode("ascii")
        assert b64d(A2["protected_b64"]) == A2["protected_header"].encode("ascii")
        expected = A2["jws"].split(".")[2]
        from_numbers = jws.load_private_key(rsa_from_jwk(crypto, A2["jwk"]))
        from_jwk = jws.load_private_key(A2["jwk"])
        assert b64e(from_numbers.sign(signing_input, "RS256")) == expected
        assert b64e(from_jwk.sign(signing_input, "RS256")) == expected
        # Our own serialization of {"alg":"RS256"} and the exact payload bytes agree too.
        assert jws.sign(A2["payload"].encode("utf-8"), from_jwk) == A2["jws"]

    def test_rfc7515_a2_jwk_without_primes(self, crypto):
        """RFC 7518 §6.3.2: p, q are optional; they are recovered from n, e, d."""
        minimal = {k: A2["jwk"][k] for k in ("kty", "n", "e", "d")}
        key = jws.load_private_key(minimal)
        signing_input = (A2["protected_b64"] + "." + A2["payload_b64"]).encode("ascii")
        assert b64e(key.sign(signing_input, "RS256")) == A2["jws"].split(".")[2]

    def test_rfc7515_a2_crt_members_consistent(self, crypto):
        rsa = crypto.rsa
        p, q, d = (b64int(A2["jwk"][k]) for k in ("p", "q", "d"))
        assert b64int(A2["jwk"]["dp"]) == rsa.rsa_crt_dmp1(d, p)
        assert b64int(A2["jwk"]["dq"]) == rsa.rsa_crt_dmq1(d, q)
        assert b64int(A2["jwk"]["qi"]) == rsa.rsa_crt_iqmp(p, q)

    def test_rfc7515_a2_verifies(self, crypto):
        public = {k: A2["jwk"][k] for k in ("kty", "n", "e")}
        assert jws.verify(A2["jws"], public, ["RS256"]) == A2["payload"].encode("utf-8")

    def test_rfc7515_a3_d_derives_x_y(self, crypto):
        jwk = A3["jwk"]
        key = crypto.ec.derive_private_key(b64int(jwk["d"]), crypto.ec.SECP256R1(),
                                           crypto.backend)
        point = key.public_key().public_numbers()
        assert (point.x, point.y) == (b64int(jwk["x"]), b64int(jwk["y"]))

    def test_rfc7515_a3_es256_verifies(self, crypto):
        """RFC 7515 A.3: randomized, so verify the RFC's own signature."""
        jwk = A3["jwk"]
        payload = A3["payload"].encode("utf-8")
        public = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
        assert jws.verify(A3["jws"], public, ["ES256"]) == payload
        assert jws.verify(A3["jws"], jwk, ["ES256", "RS256"]) == payload
        # Independent check: the RFC's R and S octets, as DER, on cryptography alone.
        signature = b64d(A3["jws"].split(".")[2])
        assert list(signature[:32]) == A3["R"] and list(signature[32:]) == A3["S"]
        public_key = crypto.ec.EllipticCurvePublicNumbers(
            b64int(jwk["x"]), b64int(jwk["y"]), crypto.ec.SECP256R1()).public_key(
            crypto.backend)
        assert independent_verify(crypto, A3["jws"], public_key) == payload

    def test_rfc7515_a3_our_signature_is_64_octets(self, crypto):
        key = jws.load_private_key(A3["jwk"])
        assert key.default_algorithm == "ES256"
        token = jws.sign(A3["payload"].encode("utf-8"), key)
        assert token.split(".")[:2] == A3["jws"].split(".")[:2]
        assert len(b64d(token.split(".")[2])) == 64
        assert independent_verify(crypto, token, key.public_key) == \
            A3["payload"].encode("utf-8")
        assert jws.verify(token, A3["jwk"], ["ES256"]) == A3["payload"].encode("utf-8")

    def test_rfc7515_a3_der_signature_rejected(self, crypto):
        """RFC 7518 §3.4: the JWS signature is R||S; a DER signature must fail."""
        head, body, sig = A3["jws"].split(".")
        raw = b64d(sig)
        der = crypto.utils.encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                int.from_bytes(raw[32:], "big"))
        assert len(der) != 64
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(head + "." + body + "." + b64e(der), A3["jwk"], ["ES256"])

    def test_rfc7520_4_1_through_sign(self, crypto):
        """RFC 7520 §4.1: our sorted compact header equals the RFC's, so sign() matches."""
        expected_header = RFC7520["protected_header"].encode("utf-8")
        assert b64d(RFC7520["jws"].split(".")[0]) == expected_header
        for form in (RFC7520["jwk"], RFC7520["pkcs1_pem"],
                     RFC7520["pkcs1_pem"].encode("ascii")):
            token = jws.sign(RFC7520["payload"].encode("utf-8"), form, "RS256",
                             headers={"kid": "bilbo.baggins@hobbiton.example"})
            assert token == RFC7520["jws"]
        public = {k: RFC7520["jwk"][k] for k in ("kty", "n", "e")}
        assert jws.verify(RFC7520["jws"], public, ["RS256"]) == \
            RFC7520["payload"].encode("utf-8")

    def test_rfc8037_a4_ed25519_byte_for_byte(self, crypto):
        """RFC 8037 A.4: Ed25519 is deterministic."""
        key = jws.load_private_key(RFC8037["jwk"])
        assert key.public_jwk() == {k: RFC8037["jwk"][k] for k in ("kty", "crv", "x")}
        assert key.thumbprint() == RFC8037["thumbprint"]
        token = jws.sign(RFC8037["payload"].encode("utf-8"), key)
        assert token == RFC8037["jws"]
        assert jws.verify(token, key.public_jwk(), ["EdDSA"]) == \
            RFC8037["payload"].encode("utf-8")

    def test_rfc9449_proofs_verify_with_example_key(self, crypto):
        for proof in RFC9449["proofs"]:
            header, claims = jws.decode_unverified(proof)
            assert header["jwk"] == RFC9449["jwk"] and header["typ"] == "dpop+jwt"
            payload = jws.verify(proof, header["jwk"], ["ES256"])
            assert json.loads(payload.decode("utf-8")) == claims

    def test_thumbprints_of_key_objects(self, crypto):
        ec_jwk = RFC9449["jwk"]
        ec_public = crypto.ec.EllipticCurvePublicNumbers(
            b64int(ec_jwk["x"]), b64int(ec_jwk["y"]), crypto.ec.SECP256R1()).public_key(
            crypto.backend)
        assert jws.jwk_thumbprint(ec_public) == RFC9449["thumbprint"]
        assert jws.public_jwk(ec_public) == ec_jwk
        rsa_public = crypto.rsa.RSAPublicNumbers(
            b64int(RFC7638["jwk"]["e"]), b64int(RFC7638["jwk"]["n"])).public_key(
            crypto.backend)
        assert jws.jwk_thumbprint(rsa_public) == RFC7638["thumbprint"]
        key = jws.load_private_key(A2["jwk"])
        assert jws.jwk_thumbprint(key) == key.thumbprint() == jws.jwk_thumbprint(A2["jwk"])


# ---------------------------------------------------------------------------
# Sign, then verify independently


@pytest.mark.crypto
class TestSignVerify:
    @pytest.mark.parametrize("alg", jws.ALGORITHMS)
    def test_every_algorithm(self, crypto, key_objects, signing_keys, alg):
        obj = key_objects[KEY_FOR_ALG[alg]]
        key = signing_keys[KEY_FOR_ALG[alg]]
        assert alg in key.algorithms
        token = jws.sign(CLAIMS, key, alg, headers={"typ": "JWT", "kid": key.thumbprint()})
        payload = independent_verify(crypto, token, obj.public_key())
        assert json.loads(payload.decode("utf-8")) == CLAIMS
        header, claims = jws.decode_unverified(token)
        assert header == {"alg": alg, "typ": "JWT", "kid": key.thumbprint()}
        assert claims == CLAIMS
        assert jws.verify(token, obj.public_key(), [alg]) == payload
        # Tampering breaks the independent verifier and ours.
        head, body, sig = token.split(".")
        forged = head + "." + b64e(b'{"iss":"attacker"}') + "." + sig
        with pytest.raises(crypto.InvalidSignature):
            independent_verify(crypto, forged, obj.public_key())
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(forged, obj.public_key(), [alg])

    def test_claims_and_header_serialization_exact(self, signing_keys):
        token = jws.sign({"b": 1, "a": [1, 2], "\u00e9": "\u2019"}, signing_keys["P-256"],
                         headers={"typ": "JWT", "kid": "k1"})
        head, body, _ = token.split(".")
        assert b64d(head) == b'{"alg":"ES256","kid":"k1","typ":"JWT"}'
        assert b64d(body) == b'{"a":[1,2],"b":1,"\\u00e9":"\\u2019"}'

    def test_es256_fixed_length_2000_messages(self, crypto, key_objects, signing_keys):
        """RFC 7518 §3.4: always 64 octets, leading zero octets kept, all verify."""
        key = signing_keys["P-256"]
        public = key_objects["P-256"].public_key()
        leading_zero = 0
        for i in range(2000):
            message = os.urandom(i % 97)
            sig = key.sign(message, "ES256")
            assert len(sig) == 64
            if sig[0] == 0 or sig[32] == 0:
                leading_zero += 1
            r = int.from_bytes(sig[:32], "big")
            s = int.from_bytes(sig[32:], "big")
            public.verify(crypto.utils.encode_dss_signature(r, s), message,
                          crypto.ec.ECDSA(crypto.hashes.SHA256()))
        assert leading_zero >= 1

    @pytest.mark.parametrize("alg", ["ES384", "ES512"])
    def test_es384_es512_fixed_length(self, crypto, key_objects, signing_keys, alg):
        size = ES_SIZES[alg]
        key = signing_keys[KEY_FOR_ALG[alg]]
        public = key_objects[KEY_FOR_ALG[alg]].public_key()
        digest = {"ES384": crypto.hashes.SHA384, "ES512": crypto.hashes.SHA512}[alg]
        zeros = 0
        for i in range(150):
            message = os.urandom(i)
            sig = key.sign(message, alg)
            assert len(sig) == 2 * size
            zeros += sig[0] == 0 or sig[size] == 0
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            public.verify(crypto.utils.encode_dss_signature(r, s), message,
                          crypto.ec.ECDSA(digest()))
        if alg == "ES512":
            # P-521 values fill 521 of 528 bits: the first octet is 0 half the time.
            assert zeros >= 1

    def test_signature_is_never_der(self, crypto, signing_keys):
        sig = signing_keys["P-256"].sign(b"x", "ES256")
        assert not (sig[0] == 0x30 and sig[1] == len(sig) - 2 and sig[2] == 0x02)

    def test_pss_is_randomized_and_salted_with_digest_length(self, crypto, key_objects,
                                                             signing_keys):
        key = signing_keys["RSA"]
        public = key_objects["RSA"].public_key()
        a, b = key.sign(b"msg", "PS256"), key.sign(b"msg", "PS256")
        assert a != b
        wrong_salt = crypto.padding.PSS(mgf=crypto.padding.MGF1(crypto.hashes.SHA256()),
                                        salt_length=20)
        with pytest.raises(crypto.InvalidSignature):
            public.verify(a, b"msg", wrong_salt, crypto.hashes.SHA256())

    def test_default_algorithms(self, signing_keys):
        assert signing_keys["RSA"].algorithms == (
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
        assert signing_keys["P-256"].algorithms == ("ES256",)
        assert signing_keys["P-384"].algorithms == ("ES384",)
        assert signing_keys["P-521"].algorithms == ("ES512",)
        assert signing_keys["Ed25519"].algorithms == ("EdDSA",)
        for name, alg in [("RSA", "RS256"), ("P-256", "ES256"), ("P-384", "ES384"),
                          ("P-521", "ES512"), ("Ed25519", "EdDSA")]:
            key = signing_keys[name]
            assert key.default_algorithm == alg
            header, _ = jws.decode_unverified(jws.sign({}, key))
            assert header == {"alg": alg}
        assert (signing_keys["RSA"].kty, signing_keys["RSA"].curve,
                signing_keys["RSA"].key_size) == ("RSA", None, 2048)
        assert (signing_keys["P-521"].kty, signing_keys["P-521"].curve,
                signing_keys["P-521"].key_size) == ("EC", "P-521", 521)
        assert (signing_keys["Ed25519"].kty, signing_keys["Ed25519"].curve) == \
            ("OKP", "Ed25519")

    def test_verify_key_forms(self, crypto, key_objects, signing_keys):
        ser = crypto.serialization
        for name in ("RSA", "P-256", "Ed25519"):
            obj, key = key_objects[name], signing_keys[name]
            token = jws.sign(CLAIMS, key)
            alg = key.default_algorithm
            pub_pem = obj.public_key().public_bytes(ser.Encoding.PEM,
                                                    ser.PublicFormat.SubjectPublicKeyInfo)
            pub_der = obj.public_key().public_bytes(ser.Encoding.DER,
                                                    ser.PublicFormat.SubjectPublicKeyInfo)
            priv_pem = obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                         ser.NoEncryption())
            forms = [key, obj, obj.public_key(), key.public_jwk(),
                     json.dumps(key.public_jwk()), pub_pem, pub_pem.decode("ascii"),
                     pub_der, priv_pem]
            for form in forms:
                assert json.loads(jws.verify(token, form, [alg]).decode("utf-8")) == CLAIMS

    def test_sign_accepts_loadable_key_forms(self, crypto, key_objects):
        jwk = private_jwk(crypto, key_objects["P-256"])
        for form in (jwk, json.dumps(jwk), key_objects["P-256"]):
            token = jws.sign(CLAIMS, form)
            independent_verify(crypto, token, key_objects["P-256"].public_key())


# ---------------------------------------------------------------------------
# Verification failures


@pytest.fixture(scope="module")
def es_token(signing_keys):
    return jws.sign(CLAIMS, signing_keys["P-256"])


@pytest.mark.crypto
class TestVerifyRefuses:

    def test_alg_not_in_algorithms(self, signing_keys, es_token):
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(es_token, signing_keys["P-256"], ["ES384", "RS256"])

    def test_alg_does_not_match_key(self, signing_keys, es_token):
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(es_token, signing_keys["RSA"], ["ES256", "RS256"])
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(es_token, signing_keys["P-384"], ["ES256", "ES384"])
        rs = jws.sign(CLAIMS, signing_keys["RSA"])
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(rs, signing_keys["P-256"], ["RS256", "ES256"])

    def test_wrong_key(self, crypto, es_token):
        other = jws.generate_private_key("EC")
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(es_token, other, ["ES256"])

    def test_alg_none_token(self, signing_keys):
        token = b64e(b'{"alg":"none"}') + "." + b64e(b'{"iss":"x"}') + "."
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(token, signing_keys["P-256"], ["ES256"])

    def test_cve_2022_29217_hmac_with_public_key_refused(self, crypto, key_objects):
        """Algorithm confusion (PyJWT CVE-2022-29217): HS256 keyed with the public key."""
        import hashlib
        import hmac

        ser = crypto.serialization
        pem = key_objects["RSA"].public_key().public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        signing_input = b64e(b'{"alg":"HS256"}') + "." + b64e(b'{"iss":"x"}')
        mac = hmac.new(pem, signing_input.encode("ascii"), hashlib.sha256).digest()
        token = signing_input + "." + b64e(mac)
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(token, pem, ["RS256"])
        with pytest.raises(ConfigurationError):
            jws.verify(token, pem, ["RS256", "HS256"])

    @pytest.mark.parametrize("algorithms", [[], ["none"], ["HS256"], ["XYZ"]])
    def test_bad_algorithms_argument(self, signing_keys, es_token, algorithms):
        with pytest.raises(ConfigurationError):
            jws.verify(es_token, signing_keys["P-256"], algorithms)

    def test_algorithms_as_str_is_a_type_error(self, signing_keys, es_token):
        with pytest.raises(TypeError):
            jws.verify(es_token, signing_keys["P-256"], "ES256")

    def test_malformed_tokens(self, signing_keys, es_token):
        head, body, sig = es_token.split(".")
        raw = b64d(sig)
        cases = [
            "", head, head + "." + body, es_token + ".x", "a.b.c",
            head + "." + body + "." + sig + "=", head + "." + body + "." + sig[:-2] + "+/",
            b64e(b"[]") + "." + body + "." + sig,
            b64e(b'{"alg":"ES256","crit":["exp"],"exp":1}') + "." + body + "." + sig,
            head + "." + body + "." + b64e(raw[:63]),
            head + "." + body + "." + b64e(raw + b"\x00"),
            head + "." + body + "." + b64e(b"\x00" * 64),
            head + "." + body + ".",
            b64e(b'{"alg":5}') + "." + body + "." + sig,
            b64e(b'{"typ":"JWT"}') + "." + body + "." + sig,
        ]
        for token in cases:
            with pytest.raises(jws.JWSVerificationError) as info:
                jws.verify(token, signing_keys["P-256"], ["ES256"])
            if len(token) > 10:
                assert token not in str(info.value)
                assert sig not in str(info.value)

    def test_der_of_our_own_signature_rejected(self, crypto, signing_keys, es_token):
        head, body, sig = es_token.split(".")
        raw = b64d(sig)
        der = crypto.utils.encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                int.from_bytes(raw[32:], "big"))
        with pytest.raises(jws.JWSVerificationError):
            jws.verify(head + "." + body + "." + b64e(der), signing_keys["P-256"],
                       ["ES256"])

    def test_unusable_verification_key(self, crypto, es_token):
        for bad in (b"garbage", "garbage", 42, {"kty": "oct", "k": "AA"}):
            with pytest.raises(InvalidKeyError):
                jws.verify(es_token, bad, ["ES256"])


# ---------------------------------------------------------------------------
# Loading


def _formats(crypto, obj):
    """(name, data, password) for every serialization of a private key object."""
    ser = crypto.serialization
    enc = ser.BestAvailableEncryption(b"correct horse")
    out = [
        ("pem-pkcs8", obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                        ser.NoEncryption()), None),
        ("pem-pkcs8-str", obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                            ser.NoEncryption()).decode("ascii"), None),
        ("pem-pkcs8-encrypted", obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                                  enc), "correct horse"),
        ("pem-pkcs8-encrypted-bytes-pw", obj.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, enc), b"correct horse"),
        ("der-pkcs8", obj.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8,
                                        ser.NoEncryption()), None),
        ("der-pkcs8-encrypted", obj.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8,
                                                  enc), "correct horse"),
        ("jwk-dict", private_jwk(crypto, obj), None),
        ("jwk-str", json.dumps(private_jwk(crypto, obj)), None),
        ("jwk-bytes", json.dumps(private_jwk(crypto, obj)).encode("utf-8"), None),
        ("object", obj, None),
    ]
    if not isinstance(obj, crypto.ed25519.Ed25519PrivateKey):
        # PKCS#1 "BEGIN RSA PRIVATE KEY" / SEC1 "BEGIN EC PRIVATE KEY", and their DER.
        out += [
            ("pem-traditional", obj.private_bytes(ser.Encoding.PEM,
                                                  ser.PrivateFormat.TraditionalOpenSSL,
                                                  ser.NoEncryption()), None),
            ("der-traditional", obj.private_bytes(ser.Encoding.DER,
                                                  ser.PrivateFormat.TraditionalOpenSSL,
                                                  ser.NoEncryption()), None),
        ]
    if hasattr(ser.PrivateFormat, "OpenSSH"):
        out.append(("openssh", obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH,
                                                 ser.NoEncryption()), None))
    return out


@pytest.mark.crypto
class TestLoad:
    @pytest.mark.parametrize("name", ["RSA", "P-256", "P-384", "P-521", "Ed25519"])
    def test_every_format_loads_and_signs(self, crypto, key_objects, name):
        obj = key_objects[name]
        expected_jwk = None
        labels = []
        for label, data, password in _formats(crypto, obj):
            key = jws.load_private_key(data, password=password)
            if expected_jwk is None:
                expected_jwk = key.public_jwk()
            assert key.public_jwk() == expected_jwk, label
            token = jws.sign(CLAIMS, key)
            assert json.loads(independent_verify(crypto, token, obj.public_key())) == CLAIMS
            labels.append(label)
        assert "pem-pkcs8-encrypted" in labels and "jwk-dict" in labels
        if name != "Ed25519":
            assert "pem-traditional" in labels and "der-traditional" in labels

    def test_traditional_pem_labels(self, crypto, key_objects):
        ser = crypto.serialization
        rsa_pem = key_objects["RSA"].private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
        ec_pem = key_objects["P-256"].private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
        assert rsa_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        assert ec_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
        assert jws.load_private_key(rsa_pem).kty == "RSA"
        assert jws.load_private_key(b"\n  " + ec_pem + b"\n\n").curve == "P-256"
        crlf = rsa_pem.replace(b"\n", b"\r\n")
        assert jws.load_private_key(crlf).thumbprint() == jws.load_private_key(
            crlf.decode("ascii")).thumbprint() == jws.load_private_key(rsa_pem).thumbprint()

    def test_signing_key_returned_as_is(self, signing_keys):
        key = signing_keys["P-256"]
        assert jws.load_private_key(key) is key

    def test_password_problems(self, crypto, key_objects):
        ser = crypto.serialization
        obj = key_objects["P-256"]
        encrypted = obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                      ser.BestAvailableEncryption(b"s3cret-pw"))
        plain = obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                  ser.NoEncryption())
        for data, password in [(encrypted, None), (encrypted, "wrong-pw"),
                               (plain, "s3cret-pw"), (private_jwk(crypto, obj), "pw")]:
            with pytest.raises(InvalidKeyError) as info:
                jws.load_private_key(data, password=password)
            message = str(info.value)
            assert "s3cret-pw" not in message and "wrong-pw" not in message
            assert "password" in message
        with pytest.raises(InvalidKeyError):
            jws.load_private_key(encrypted, password=123)

    def test_rsa_under_2048_refused(self, crypto):
        small = crypto.rsa.generate_private_key(65537, 1024, crypto.backend)
        ser = crypto.serialization
        pem = small.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                  ser.NoEncryption())
        for data in (small, pem, private_jwk(crypto, small)):
            with pytest.raises(InvalidKeyError) as info:
                jws.load_private_key(data)
            assert "1024" in str(info.value) and "2048" in str(info.value)
        token = b64e(b'{"alg":"RS256"}') + "." + b64e(b"{}") + ".AAAA"
        with pytest.raises(InvalidKeyError):
            jws.verify(token, small.public_key(), ["RS256"])
        with pytest.raises(InvalidKeyError):
            jws.generate_private_key("RSA", key_size=1024)

    def test_public_keys_refused(self, crypto, key_objects):
        ser = crypto.serialization
        for name in ("RSA", "P-256", "Ed25519"):
            public = key_objects[name].public_key()
            forms = [
                public,
                public.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
                public.public_bytes(ser.Encoding.PEM,
                                    ser.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
                public.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo),
                jws.public_jwk(public),
                json.dumps(jws.public_jwk(public)),
            ]
            if name == "RSA":
                forms.append(public.public_bytes(ser.Encoding.PEM, ser.PublicFormat.PKCS1))
            for form in forms:
                with pytest.raises(InvalidKeyError) as info:
                    jws.load_private_key(form)
                assert "public key; a private key is required" in str(info.value)

    @pytest.mark.parametrize("bad", [
        b"garbage", "garbage", "/etc/ssl/private/key.pem", b"", "", 42, None, 1.5,
        ["list"], object(),
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "-----BEGIN SOMETHING-----\nMIIB\n-----END SOMETHING-----\n",
        "{not json", "[1, 2]", b"\x30\x03\x02\x01\x00", b"{\xff}",
        {}, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA"}, {"kty": "RSA", "d": "AQAB"},
        {"kty": "EC", "crv": "P-256", "d": 7}, {"kty": "EC", "crv": "P-256", "d": "!!"},
        {"kty": "EC", "crv": "P-256", "d": ""},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "d": "AQ"},
        {"kty": "OKP", "crv": "Ed448", "x": "AA", "d": "AQ"},
        {"kty": "OKP", "crv": "X25519", "x": "AA", "d": "AQ"},
        {"kty": "OKP", "crv": "Ed25519", "d": "AQID"},
    ])
    def test_garbage_refused(self, crypto, bad):
        with pytest.raises(InvalidKeyError):
            jws.load_private_key(bad)

    def test_unsupported_key_objects(self, crypto):
        k1 = crypto.ec.generate_private_key(crypto.ec.SECP256K1(), crypto.backend)
        with pytest.raises(InvalidKeyError) as info:
            jws.load_private_key(k1)
        assert "curve" in str(info.value)
        ser = crypto.serialization
        with pytest.raises(InvalidKeyError):
            jws.load_private_key(k1.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                                  ser.NoEncryption()))
        with pytest.raises(InvalidKeyError):
            jws.load_private_key(crypto.x25519.X25519PrivateKey.generate())

    def test_inconsistent_jwks_refused_without_leaking(self, crypto, key_objects):
        ec_jwk = private_jwk(crypto, key_objects["P-256"])
        other = private_jwk(crypto, crypto.ec.generate_private_key(
            crypto.ec.SECP256R1(), crypto.backend))
        mixed = dict(ec_jwk, d=other["d"])
        ed = private_jwk(crypto, key_objects["Ed25519"])
        ed_other = private_jwk(crypto, crypto.ed25519.Ed25519PrivateKey.generate())
        rsa_bad_d = dict(A2["jwk"])
        rsa_bad_d["d"] = b64e((b64int(A2["jwk"]["d"]) + 2).to_bytes(256, "big"))
        rsa_no_primes_bad_d = {k: rsa_bad_d[k] for k in ("kty", "n", "e", "d")}
        rsa_oth = dict(A2["jwk"], oth=[])
        for jwk in (mixed, dict(ed, d=ed_other["d"]), rsa_bad_d, rsa_no_primes_bad_d,
                    rsa_oth, dict(ec_jwk, crv="P-384")):
            before = copy.deepcopy(jwk)
            with pytest.raises(InvalidKeyError) as info:
                jws.load_private_key(jwk)
            assert jwk == before
            assert jwk["d"] not in str(info.value) and jwk["d"][:12] not in repr(info.value)

    def test_jwk_dict_not_mutated(self, crypto, key_objects):
        for name in ("RSA", "P-256", "Ed25519"):
            jwk = dict(private_jwk(crypto, key_objects[name]), kid="k", use="sig")
            before = copy.deepcopy(jwk)
            jws.load_private_key(jwk)
            assert jwk == before


# ---------------------------------------------------------------------------
# JWK export (RFC 7518 §6.2, §6.3; RFC 9449 §4.2)


@pytest.mark.crypto
class TestPublicJwk:
    def test_1000_ec_keys_have_full_length_coordinates(self, crypto):
        for _ in range(1000):
            jwk = jws.generate_private_key("EC").public_jwk()
            assert len(jwk["x"]) == 43 and len(jwk["y"]) == 43
            assert len(b64d(jwk["x"])) == 32 and len(b64d(jwk["y"])) == 32
            assert sorted(jwk) == ["crv", "kty", "x", "y"]

    def test_leading_zero_coordinate_kept(self, crypto):
        """A deterministic key whose x or y starts with a zero octet exports 32 octets."""
        ec = crypto.ec
        for d in range(1, 5000):
            obj = ec.derive_private_key(d, ec.SECP256R1(), crypto.backend)
            nums = obj.public_key().public_numbers()
            if nums.x < 2 ** 248 or nums.y < 2 ** 248:
                break
        else:  # pragma: no cover
            pytest.fail("no small coordinate found")
        jwk = jws.load_private_key(obj).public_jwk()
        coordinate = jwk["x"] if nums.x < 2 ** 248 else jwk["y"]
        assert len(coordinate) == 43 and coordinate.startswith("A")
        assert b64d(coordinate)[0] == 0 and len(b64d(coordinate)) == 32
        assert jws.load_private_key(private_jwk(crypto, obj)).public_jwk() == jwk

    def test_p384_p521_lengths(self, signing_keys):
        assert len(b64d(signing_keys["P-384"].public_jwk()["x"])) == 48
        assert len(b64d(signing_keys["P-521"].public_jwk()["y"])) == 66

    def test_rsa_minimal_octets(self, crypto, signing_keys, generated_rsa):
        keys = [signing_keys["RSA"], generated_rsa, jws.load_private_key(RFC7520["jwk"])]
        for key in keys:
            jwk = key.public_jwk()
            assert sorted(jwk) == ["e", "kty", "n"]
            assert jwk["e"] == "AQAB"
            assert not jwk["n"].startswith("AA")
            raw = b64d(jwk["n"])
            assert raw[0] != 0 and len(raw) == key.key_size // 8
        assert signing_keys["RSA"].public_jwk()["n"] == A2["jwk"]["n"]
        assert generated_rsa.key_size == 2048
        assert "RS256" in generated_rsa.algorithms

    def test_no_private_members(self, crypto, key_objects, signing_keys):
        for name, key in signing_keys.items():
            jwk = key.public_jwk()
            assert not set(jwk) & {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
            assert jws.public_jwk(key) == jwk
            assert jws.public_jwk(key_objects[name]) == jwk
            assert jws.public_jwk(private_jwk(crypto, key_objects[name])) == jwk
            assert jws.jwk_thumbprint(key_objects[name]) == key.thumbprint()
            assert jws.jwk_thumbprint(jwk) == key.thumbprint()
            jwk["kty"] = "changed"
            assert key.public_jwk()["kty"] != "changed"  # a new dict every call

    def test_generate_errors(self, crypto):
        with pytest.raises(ConfigurationError):
            jws.generate_private_key("oct")
        with pytest.raises(ConfigurationError):
            jws.generate_private_key("EC", curve="P-192")
        with pytest.raises(ConfigurationError):
            jws.generate_private_key("OKP", curve="X25519")
        assert jws.generate_private_key("OKP").curve == "Ed25519"
        assert jws.generate_private_key("EC", curve="P-384").default_algorithm == "ES384"


# ---------------------------------------------------------------------------
# Secrets and callers' data


@pytest.mark.crypto
class TestSecrets:
    def test_repr_shows_no_key_material(self, crypto, key_objects):
        ser = crypto.serialization
        for name in ("RSA", "P-256", "Ed25519"):
            obj = key_objects[name]
            pem = obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                    ser.NoEncryption())
            jwk = private_jwk(crypto, obj)
            key = jws.load_private_key(pem)
            text = repr(key) + str(key)
            assert key.thumbprint() in text and repr(key.kty) in text
            for line in pem_body_lines(pem):
                assert line not in text
            assert jwk["d"] not in text and jwk["d"][:10] not in text
            assert str(b64int(jwk["d"])) not in text
            assert "%x" % b64int(jwk["d"]) not in text

    def test_pickling_refused(self, signing_keys):
        for key in signing_keys.values():
            for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
                with pytest.raises(TypeError):
                    pickle.dumps(key, protocol=protocol)
            with pytest.raises(TypeError):
                key.__getstate__()

    def test_copy_returns_the_same_immutable_key(self, signing_keys):
        key = signing_keys["P-256"]
        assert copy.copy(key) is key and copy.deepcopy(key) is key

    def test_sign_does_not_mutate_headers_or_claims(self, signing_keys):
        headers = {"typ": "JWT", "kid": "k1"}
        claims = dict(CLAIMS)
        before_h, before_c = copy.deepcopy(headers), copy.deepcopy(claims)
        jws.sign(claims, signing_keys["P-256"], "ES256", headers=headers)
        assert headers == before_h and "alg" not in headers
        assert claims == before_c
        # A read-only mapping works as well.
        jws.sign(types.MappingProxyType(claims), signing_keys["P-256"],
                 headers=types.MappingProxyType(headers))

    def test_invalid_key_messages_never_echo_pem(self, crypto, key_objects):
        ser = crypto.serialization
        pem = key_objects["P-256"].private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                                 ser.NoEncryption()).decode("ascii")
        lines = pem.splitlines()
        broken = "\n".join(lines[:2] + ["!!!"] + lines[2:])
        with pytest.raises(InvalidKeyError) as info:
            jws.load_private_key(broken)
        for line in pem_body_lines(pem):
            assert line not in str(info.value)


# ---------------------------------------------------------------------------
# Algorithm policy (RFC 8725 §3.1, §3.2)


@pytest.mark.crypto
class TestAlgorithmPolicy:
    @pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512", "XS256", "", "RSA"])
    def test_refused_algorithms(self, signing_keys, alg):
        with pytest.raises(ConfigurationError) as info:
            jws.sign(CLAIMS, signing_keys["RSA"], alg)
        assert not isinstance(info.value, InvalidKeyError)
        with pytest.raises(ConfigurationError):
            signing_keys["P-256"].sign(b"x", alg)

    @pytest.mark.parametrize("key_name,alg", [
        ("RSA", "ES256"), ("RSA", "EdDSA"), ("P-256", "RS256"), ("P-256", "ES384"),
        ("P-384", "ES256"), ("P-521", "ES256"), ("Ed25519", "ES256"), ("P-256", "PS256"),
    ])
    def test_alg_must_match_key(self, signing_keys, key_name, alg):
        with pytest.raises(InvalidKeyError):
            jws.sign(CLAIMS, signing_keys[key_name], alg)
        with pytest.raises(InvalidKeyError):
            signing_keys[key_name].sign(b"x", alg)

    def test_headers_cannot_override_alg(self, signing_keys):
        key = signing_keys["P-256"]
        for alg in ("none", "HS256", "RS256"):
            with pytest.raises(ConfigurationError):
                jws.sign(CLAIMS, key, headers={"alg": alg})
            with pytest.raises(ConfigurationError):
                jws.sign(CLAIMS, key, "ES256", headers={"alg": alg})
        header, _ = jws.decode_unverified(jws.sign(CLAIMS, key, headers={"alg": "ES256"}))
        assert header == {"alg": "ES256"}

    def test_bad_payloads_and_headers(self, signing_keys):
        key = signing_keys["P-256"]
        with pytest.raises(TypeError):
            jws.sign("a string", key)
        with pytest.raises(TypeError):
            jws.sign(CLAIMS, key, headers=[("typ", "JWT")])
        with pytest.raises(ConfigurationError):
            jws.sign({"exp": float("nan")}, key)
        with pytest.raises(ConfigurationError):
            jws.sign({"exp": object()}, key)
        with pytest.raises(ConfigurationError):
            jws.sign(CLAIMS, key, headers={"x5c": {1, 2}})
