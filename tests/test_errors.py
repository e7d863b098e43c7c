"""Tests for mcpauth.errors: the exception tree, pickling, messages and peer-text cleaning.

RFC 6749 §5.2 (OAuthError fields); the tree in the module docstring is parsed and compared
with the real class hierarchy.
"""

import copy
import pickle
import re

import pytest

from mcpauth import errors
from mcpauth.errors import (
    MAX_PEER_TEXT,
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    InsufficientScopeError,
    InvalidKeyError,
    IssuerMismatchError,
    MCPAuthError,
    MCPAuthWarning,
    MCPError,
    MissingDependencyError,
    OAuthError,
    ProtocolError,
    ResourceMismatchError,
    TokenResponseError,
    TransportError,
    UnauthorizedError,
    clean_peer_text,
)


def _samples():
    """One instance of every class in errors.__all__, with every attribute set."""
    return [
        MCPAuthError("root message"),
        ConfigurationError("bad configuration"),
        InvalidKeyError("RSA key is 1024 bits; at least 2048 are needed"),
        MissingDependencyError("needs cryptography", package="cryptography"),
        InsecureEndpointError("refusing plain http", url="http://as.example/token"),
        TransportError("POST https://as.example/token timed out after 30.0 s"),
        ProtocolError("bad response", status_code=502),
        DiscoveryError("no metadata", status_code=404),
        IssuerMismatchError("issuer mismatch", expected="https://a.example",
                            received="https://b.example"),
        ResourceMismatchError("resource mismatch", expected="https://mcp.example/mcp",
                              received="https://other.example/mcp"),
        AuthorizationServerMismatchError("not the pinned issuer",
                                         expected_issuer="https://a.example",
                                         issuer="https://evil.example"),
        TokenResponseError("no access_token", status_code=200),
        OAuthError("invalid_client", "Client authentication failed",
                   "https://as.example/errors#invalid_client", 401),
        MCPError("Unknown tool: x", code=-32602, data={"requested": "x"}, status_code=400),
        UnauthorizedError("refused after a fresh token", 401, error="invalid_token",
                          error_description="expired", scope="mcp:read",
                          resource_metadata="https://mcp.example/.well-known/x"),
        InsufficientScopeError("still 403", required_scope="mcp:write", status_code=403,
                               error_description="needs write",
                               resource_metadata="https://mcp.example/.well-known/x"),
        MCPAuthWarning("peer deviates from a recommendation"),
    ]


SAMPLES = _samples()


def _ids(value):
    return type(value).__name__


def test_samples_cover_every_exported_class():
    assert sorted(type(s).__name__ for s in SAMPLES) == sorted(errors.__all__)


def test_all_lists_every_exception_and_warning_defined_in_the_module():
    defined = sorted(
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, (MCPAuthError, Warning))
        and value.__module__ == errors.__name__)
    assert defined == sorted(errors.__all__)
    assert len(set(errors.__all__)) == len(errors.__all__)


@pytest.mark.parametrize("exc", SAMPLES, ids=_ids)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip_keeps_type_message_and_attributes(exc, protocol):
    clone = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(clone) is type(exc)
    assert clone.args == exc.args
    assert str(clone) == str(exc)
    assert repr(clone) == repr(exc)
    assert vars(clone) == vars(exc)
    if isinstance(exc, MCPAuthError):
        assert clone.message == exc.message
        assert clone.retryable == exc.retryable


@pytest.mark.parametrize("exc", SAMPLES, ids=_ids)
def test_copy_and_deepcopy_keep_attributes(exc):
    for clone in (copy.copy(exc), copy.deepcopy(exc)):
        assert type(clone) is type(exc)
        assert str(clone) == str(exc)
        assert vars(clone) == vars(exc)


def test_pickle_keeps_notes_where_supported():
    exc = OAuthError("invalid_grant", status_code=400)
    if not hasattr(exc, "add_note"):
        pytest.skip("BaseException.add_note needs Python 3.11")
    exc.add_note("while refreshing")
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.__notes__ == ["while refreshing"]


def test_pickled_oauth_error_stays_retryable_by_status():
    exc = OAuthError("invalid_request", status_code=503)
    assert pickle.loads(pickle.dumps(exc)).retryable is True


@pytest.mark.parametrize("exc", [s for s in SAMPLES if isinstance(s, MCPAuthError)],
                         ids=_ids)
def test_repr_is_class_name_and_message_only(exc):
    assert repr(exc) == "{}({!r})".format(type(exc).__name__, str(exc))
    for name, value in vars(exc).items():
        if name != "message" and isinstance(value, str) and value not in str(exc):
            assert value not in repr(exc), name


# ---------------------------------------------------------------- hierarchy


def test_configuration_error_is_a_value_error():
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(InvalidKeyError, ValueError)
    with pytest.raises(ValueError):
        raise ConfigurationError("x")


def test_missing_dependency_error_is_an_import_error_and_a_configuration_error():
    assert issubclass(MissingDependencyError, ImportError)
    assert issubclass(MissingDependencyError, ConfigurationError)
    with pytest.raises(ImportError) as info:
        raise MissingDependencyError("needs cryptography")
    assert info.value.package == "cryptography"
    assert str(info.value) == "needs cryptography"


def test_every_exported_exception_derives_from_the_root():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name == "MCPAuthWarning":
            assert issubclass(cls, UserWarning)
            assert not issubclass(cls, MCPAuthError)
        else:
            assert issubclass(cls, MCPAuthError), name


def test_local_and_remote_errors_are_distinct():
    remote = (TransportError, ProtocolError, OAuthError, UnauthorizedError,
              InsufficientScopeError, MCPError)
    for cls in remote:
        assert not issubclass(cls, ConfigurationError), cls
        assert not issubclass(cls, ValueError), cls
    assert not issubclass(ConfigurationError, (TransportError, ProtocolError, OAuthError))


def test_names_known_from_the_typescript_sdk_are_exported():
    import mcpauth

    for name in ("UnauthorizedError", "AuthorizationServerMismatchError",
                 "InsecureEndpointError", "OAuthError"):
        assert getattr(mcpauth, name) is getattr(errors, name)
        assert name in mcpauth.__all__


def test_retryable_defaults():
    assert MCPAuthError.retryable is False
    assert TransportError("t").retryable is True
    assert ProtocolError("p").retryable is False
    assert ConfigurationError("c").retryable is False
    assert InsecureEndpointError("i").retryable is False
    assert UnauthorizedError("u").retryable is False
    assert InsufficientScopeError("s").retryable is False


@pytest.mark.parametrize("cls", [ProtocolError, DiscoveryError, TokenResponseError, MCPError])
@pytest.mark.parametrize("status, retryable", [
    (None, False), (200, False), (400, False), (401, False), (403, False), (404, False),
    (408, True), (413, False), (429, True), (500, True), (502, True), (503, True),
])
def test_protocol_and_mcp_errors_are_retryable_by_status(cls, status, retryable):
    """A 408, 429 or 5xx answer may pass when tried later (the CLI exits 4 for it)."""
    assert cls("x", status_code=status).retryable is retryable


@pytest.mark.parametrize("cls", [ProtocolError, DiscoveryError, TokenResponseError])
def test_protocol_error_retryable_set_on_the_instance_wins_and_pickles(cls):
    up = cls("outage", status_code=404)
    up.retryable = True                      # as discovery and grants do
    down = cls("bad document", status_code=503)
    down.retryable = False
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(up, protocol=protocol)).retryable is True
        assert pickle.loads(pickle.dumps(down, protocol=protocol)).retryable is False
    assert copy.deepcopy(up).retryable is True and copy.copy(down).retryable is False
    assert up.retryable is True and down.retryable is False
    assert cls("plain", status_code=404).retryable is False  # per instance, not per class


@pytest.mark.parametrize("error, status, retryable", [
    ("server_error", 500, True),
    ("server_error", None, True),
    ("temporarily_unavailable", 503, True),
    ("temporarily_unavailable", 400, True),
    ("invalid_request", 502, True),
    ("invalid_request", 500, True),
    ("slow_down", 429, True),
    ("invalid_client", 400, False),
    ("invalid_client", 401, False),
    ("invalid_grant", 400, False),
    ("unauthorized_client", None, False),
    ("invalid_scope", 499, False),
])
def test_oauth_error_retryable(error, status, retryable):
    assert OAuthError(error, status_code=status).retryable is retryable


# ---------------------------------------------------------------- OAuthError (RFC 6749 §5.2)


def test_oauth_error_fields_and_message_format():
    exc = OAuthError("invalid_client", "Client authentication failed",
                     "https://as.example/doc", 401)
    assert exc.error == "invalid_client"
    assert exc.error_description == "Client authentication failed"
    assert exc.error_uri == "https://as.example/doc"
    assert exc.status_code == 401
    assert str(exc) == "invalid_client: Client authentication failed"
    assert exc.message == str(exc)
    assert exc.args == ("invalid_client: Client authentication failed",)


def test_oauth_error_without_description_is_just_the_code():
    exc = OAuthError("invalid_grant", status_code=400)
    assert str(exc) == "invalid_grant"
    assert exc.error_description is None
    assert exc.error_uri is None


def test_oauth_error_explicit_message_wins():
    exc = OAuthError("invalid_client", "desc", message="token request to x failed")
    assert str(exc) == "token request to x failed"
    assert exc.error == "invalid_client"


@pytest.mark.parametrize("bad", [None, 42, {"a": 1}, ["invalid_client"], ""])
def test_oauth_error_with_unusable_error_code(bad):
    exc = OAuthError(bad, 7, ["not", "a", "uri"])
    assert exc.error == "invalid_response"
    assert exc.error_description is None
    assert exc.error_uri is None
    assert str(exc) == "invalid_response"


# ---------------------------------------------------------------- MCPError (JSON-RPC 2.0 §5.1)


def test_mcp_error_fields_and_cleaned_message():
    exc = MCPError("Unknown tool:\nINFO forged", code=-32602, data={"a": [1]}, status_code=400)
    assert str(exc) == exc.message == "Unknown tool: INFO forged"
    assert (exc.code, exc.data, exc.status_code) == (-32602, {"a": [1]}, 400)
    assert exc.retryable is False
    assert MCPError("x" * 5000).message == "x" * MAX_PEER_TEXT + "..."


@pytest.mark.parametrize("message, code", [(None, "-32602"), (42, True), ({"m": 1}, 1.5)])
def test_mcp_error_with_unusable_message_or_code(message, code):
    exc = MCPError(message, code=code)
    assert str(exc) == "JSON-RPC error without a message"
    assert exc.code is None


@pytest.mark.parametrize("status, retryable", [(None, False), (400, False), (404, False),
                                               (429, True), (500, True), (503, True)])
def test_mcp_error_retryable_by_status(status, retryable):
    assert MCPError("m", code=-32603, status_code=status).retryable is retryable


# ---------------------------------------------------------------- peer text


LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
               "\u2028", "\u2029"]


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=repr)
def test_peer_text_cannot_inject_log_lines(brk):
    forged = "bad client{}INFO mcpauth: token accepted".format(brk)
    exc = OAuthError("invalid_client" + brk + "x", forged, "https://e.example/" + brk, 401)
    for text in (str(exc), repr(exc), exc.error, exc.error_description, exc.error_uri):
        assert len(text.splitlines()) == 1, text
    assert "INFO mcpauth: token accepted" in exc.error_description
    unauthorized = UnauthorizedError("refused", error="invalid_token" + brk,
                                     error_description=forged, scope="a" + brk + "b",
                                     resource_metadata="https://m.example/" + brk)
    for name in ("error", "error_description", "scope", "resource_metadata"):
        assert len(getattr(unauthorized, name).splitlines()) == 1, name
    insufficient = InsufficientScopeError("still 403", required_scope="a" + brk + "b",
                                          error_description=forged,
                                          resource_metadata="https://m.example/" + brk)
    for name in ("required_scope", "error_description", "resource_metadata"):
        assert len(getattr(insufficient, name).splitlines()) == 1, name


def test_clean_peer_text_replaces_every_control_character():
    controls = "".join(chr(c) for c in list(range(0x20)) + list(range(0x7f, 0xa0)))
    cleaned = clean_peer_text("a" + controls + "b")
    assert cleaned == "a" + " " * len(controls) + "b"
    assert clean_peer_text("\x1b[31mred\x1b[0m") == " [31mred [0m"


def test_clean_peer_text_keeps_printable_unicode():
    text = "Jeton expiré — 令牌已过期 \u00a0 ok"
    assert clean_peer_text(text) == text


def test_clean_peer_text_makes_lone_surrogates_encodable():
    cleaned = clean_peer_text("bad \ud800 text \udfff")
    cleaned.encode("utf-8")
    assert cleaned == "bad   text  "
    exc = OAuthError("invalid_grant", "x\udc80y")
    str(exc).encode("utf-8")


def test_clean_peer_text_truncates():
    long = "x" * (MAX_PEER_TEXT * 10)
    cleaned = clean_peer_text(long)
    assert cleaned == "x" * MAX_PEER_TEXT + "..."
    assert clean_peer_text("y" * MAX_PEER_TEXT) == "y" * MAX_PEER_TEXT
    assert clean_peer_text("abcdef", limit=3) == "abc..."


def test_peer_attributes_are_truncated():
    exc = OAuthError("e" * 1000, "d" * 5000, "https://u.example/" + "u" * 5000, 400)
    assert exc.error == "e" * 100 + "..."
    assert exc.error_description == "d" * MAX_PEER_TEXT + "..."
    assert len(exc.error_uri) == MAX_PEER_TEXT + 3
    assert len(str(exc)) < 500
    unauthorized = UnauthorizedError("u", error_description="d" * 5000, scope="s" * 5000)
    assert len(unauthorized.error_description) == MAX_PEER_TEXT + 3
    assert len(unauthorized.scope) == 1003


@pytest.mark.parametrize("value", [None, 1, 1.5, b"bytes", ["x"], {"x": 1}, True])
def test_clean_peer_text_rejects_non_strings(value):
    assert clean_peer_text(value) is None


# ---------------------------------------------------------------- the docstring tree


_TREE_LINE = re.compile(r"^(?P<prefix>[│├└─ ]*)(?P<name>[A-Z]\w*(?:Error|Warning))\b"
                        r"(?:\((?P<bases>[^)]*)\))?")


def _parse_tree():
    """(name, depth, parent name or None, listed bases) for each class in the drawing."""
    doc = errors.__doc__
    start = doc.index("The tree::")
    lines = doc[start:].splitlines()[1:]
    body = []
    for line in lines:
        if body and not line.strip():
            break
        if line.strip():
            body.append(line)
    indent = min(len(line) - len(line.lstrip(" ")) for line in body)
    entries = []
    stack = []  # type: list
    for line in body:
        match = _TREE_LINE.match(line[indent:])
        if not match:
            continue  # a continuation line: a comment under the previous class
        prefix = match.group("prefix")
        assert len(prefix) % 4 == 0, line
        depth = len(prefix) // 4
        del stack[depth:]
        parent = stack[-1] if stack else None
        stack.append(match.group("name"))
        bases = [b.strip() for b in (match.group("bases") or "").split(",") if b.strip()]
        entries.append((match.group("name"), depth, parent, bases))
    return entries


def test_docstring_tree_lists_every_exported_class_once():
    names = [name for name, _, _, _ in _parse_tree()]
    assert sorted(names) == sorted(errors.__all__)
    assert len(names) == len(set(names))


def test_docstring_tree_matches_the_class_hierarchy():
    for name, depth, parent, bases in _parse_tree():
        cls = getattr(errors, name)
        if parent is None:
            assert depth == 0
            assert cls.__bases__[0] in (Exception, UserWarning), name
        else:
            assert cls.__bases__[0] is getattr(errors, parent), name
        real = [b.__name__ for b in cls.__bases__]
        for listed in bases:
            if listed == "..":
                continue
            assert listed in real, (name, listed, real)
        # Every extra base (ValueError, ImportError) is drawn, so `except` users see it.
        for extra in real[1:]:
            assert extra in bases, (name, extra)
