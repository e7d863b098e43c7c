"""The ``mcpauth`` command, run for real in subprocesses against loopback servers.

Exit statuses, stdout (exactly the token for ``token``; JSON for ``tools``, ``call`` and
``discover``), one-line errors on stderr, and no secret or token in any output. A few
pure helpers (argument parsing, the exit-status table) are also tested in-process.
"""

import io
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mcpauth import (AuthorizationServerMismatchError, ConfigurationError, DiscoveryError,
                     InsecureEndpointError, InsufficientScopeError, IssuerMismatchError,
                     OAuthError, ProtocolError, ResourceMismatchError, TokenResponseError,
                     TransportError, UnauthorizedError, __version__, cli)
from mcpauth.errors import MCPError
from mcpauth.testing import LoopbackStack

needs_cryptography = pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None, reason="needs the cryptography package")

ROOT = Path(__file__).resolve().parent.parent
SECRET_LIKE = "s3cr3t-Value-that-must-never-show"
# What a token or a JWT looks like in output (the loopback AS mints "at-" + 32 chars).
TOKEN_PATTERN = re.compile(r"at-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{10,}\.")


def run(args, env=None, cwd=None, pythonpath=None, timeout=60):
    """Run ``python -m mcpauth ARGS`` with a clean MCPAUTH_* environment."""
    full_env = dict((k, v) for k, v in os.environ.items() if not k.startswith("MCPAUTH_"))
    full_env["PYTHONPATH"] = pythonpath or str(ROOT)
    full_env.update(env or {})
    module = args[0] if args and args[0].endswith(".mcpauth") else None
    cmd = [sys.executable, "-m", module or "mcpauth"] + list(args[1:] if module else args)
    proc = subprocess.Popen(cmd, cwd=cwd or str(ROOT), env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_error_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mcpauth: error: "), err
    return lines[0]


def creds(stack):
    return {"MCPAUTH_CLIENT_ID": stack.client_id, "MCPAUTH_CLIENT_SECRET": stack.client_secret}


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


@pytest.fixture
def secret_file(tmp_path, stack):
    path = tmp_path / "client-secret"
    path.write_text(stack.client_secret + "\n")
    os.chmod(str(path), 0o600)
    return path


# ---------------------------------------------------------------- token


def test_token_prints_exactly_the_token(stack):
    code, out, err = run(["token", stack.mcp_url], creds(stack))
    assert code == 0, err
    assert err == ""
    assert out.endswith("\n") and out.count("\n") == 1
    token = out[:-1]
    info = stack.as_.introspect(token)
    assert info is not None and info["client_id"] == stack.client_id
    assert info["resource"] == stack.mcp.resource
    assert stack.client_secret not in out + err


def test_verbose_logs_on_stderr_without_secret_or_token(stack, secret_file):
    code, out, err = run(["token", stack.mcp_url, "--verbose",
                          "--client-id", stack.client_id,
                          "--client-secret-file", str(secret_file)])
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n"
    assert "mcpauth: DEBUG: " in err and "token request" in err
    assert stack.client_secret not in err
    assert token not in err
    assert stack.as_.token_requests()[0].info["auth_method"] == "client_secret_basic"


def test_auth_method_flag_is_used(stack, secret_file):
    code, out, err = run(["token", stack.mcp_url, "--client-id", stack.client_id,
                          "--client-secret-file", str(secret_file),
                          "--auth-method", "client_secret_post", "--scope", "b a"])
    assert code == 0, err
    record = stack.as_.token_requests()[0]
    assert record.info["auth_method"] == "client_secret_post"
    assert sorted(record.form["scope"].split()) == ["a", "b"]


def test_a_secret_flag_is_refused_without_echoing_the_value(stack):
    code, out, err = run(["token", stack.mcp_url, "--client-secret", SECRET_LIKE],
                         {"MCPAUTH_CLIENT_ID": "x"})
    assert code == cli.EXIT_USAGE
    line = one_error_line(err)
    assert "--client-secret-file" in line
    assert SECRET_LIKE not in out + err
    assert stack.as_.requests == [] and stack.mcp.requests == []


@pytest.mark.parametrize("argv", [
    ["token", "URL", "--token", SECRET_LIKE],
    ["token", "URL", "--private-key=" + SECRET_LIKE],
    ["--client-secret", SECRET_LIKE, "token", "URL"],
    ["token", "URL", SECRET_LIKE],
    [SECRET_LIKE],
    ["token", "URL", "--client-secret-fil", SECRET_LIKE],  # no abbreviations
    ["tools", SECRET_LIKE],                                 # a secret where the URL goes
    ["tools", SECRET_LIKE, "-v"],                           # ... and no traceback either
    ["call", "s3cr3t:" + SECRET_LIKE, "add"],
    ["token", "http:" + SECRET_LIKE],
    ["discover", "ftp://" + SECRET_LIKE + "/mcp"],
    ["tools", "--timeout", SECRET_LIKE, "https://mcp.example/mcp"],
    ["tools", "https://mcp.example/mcp", "--timeout=" + SECRET_LIKE],
    ["tools", "--auth-method", SECRET_LIKE, "https://mcp.example/mcp"],
    ["tools", "https://mcp.example/mcp", "-X" + SECRET_LIKE],
    ["tools", "https://mcp.example/mcp", "--" + SECRET_LIKE],
    ["tools", "https://mcp.example/mcp", "--unknown=" + SECRET_LIKE],
    ["tools", "https://mcp.example/mcp", "--verbose=" + SECRET_LIKE],
    ["-v=" + SECRET_LIKE, "tools", "https://mcp.example/mcp"],
    ["token", "https://mcp.example/mcp", "--issuer", SECRET_LIKE],
    ["token", "https://mcp.example/mcp", "--expected-issuer", SECRET_LIKE, "-v"],
    ["token", "https://mcp.example/mcp", "--token-endpoint", "/" + SECRET_LIKE],
])
def test_values_that_may_be_secrets_are_never_echoed(argv, monkeypatch):
    for name in list(os.environ):
        if name.startswith("MCPAUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MCPAUTH_TOKEN", "tok")  # a credential, so only the value is wrong
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, stdout=out, stderr=err)
    assert code == cli.EXIT_USAGE
    one_error_line(err.getvalue())
    assert SECRET_LIKE not in out.getvalue() + err.getvalue()
    assert SECRET_LIKE.lower() not in err.getvalue().lower()


@pytest.mark.parametrize("argv, message", [
    (["tools", "not-a-url"], "the URL argument is not an http(s) URL"),
    (["tools", "--timeout", "x", "https://m.example/mcp"],
     "argument --timeout: invalid float value"),
    (["tools", "--auth-method", "x", "https://m.example/mcp"],
     "argument --auth-method: invalid choice (choose from client_secret_basic, "
     "client_secret_post)"),
    (["tools", "https://m.example/mcp", "--verbose=x"],
     "argument -v/--verbose: ignored explicit argument"),
    (["tools", "https://m.example/mcp", "--scope"], "argument --scope: expected one argument"),
    (["tools", "https://m.example/mcp", "-Xvalue", "--scopes=v", "word"],
     "unrecognized arguments: -X, --scopes, and 1 unexpected value(s)"),
    (["call", "https://m.example/mcp"], "the following arguments are required: TOOL"),
    (["token", "https://m.example/mcp", "--issuer", "x"],
     "--issuer (or MCPAUTH_ISSUER) is not an http(s) URL"),
])
def test_usage_errors_name_the_option_but_not_the_value(argv, message):
    err = io.StringIO()
    assert cli.main(argv, stdout=io.StringIO(), stderr=err) == cli.EXIT_USAGE
    assert one_error_line(err.getvalue()) == "mcpauth: error: " + message


def test_verbose_prints_no_traceback_and_no_url_query_for_an_mcpauth_error(tmp_path):
    """A connection failure chains urllib3 and requests exceptions whose text holds
    the full URL with its query; --verbose shows the log, not that traceback."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    token_file = tmp_path / "token"
    token_file.write_text("my-own-token\n")
    code, out, err = run(["tools", "http://127.0.0.1:%d/mcp?api_key=%s" % (port, SECRET_LIKE),
                          "--token-file", str(token_file), "-v"])
    assert code == cli.EXIT_NETWORK
    assert "Traceback" not in err and SECRET_LIKE not in out + err
    assert "api_key" not in err and "my-own-token" not in err
    assert err.splitlines()[-1] == (
        "mcpauth: error: MCP tools/list to http://127.0.0.1:%d/mcp failed "
        "(ConnectionError)" % port)


def test_verbose_log_never_shows_the_url_query(stack):
    url = stack.mcp_url + "?api_key=" + SECRET_LIKE
    for argv in (["token", url, "-v"], ["call", url, "add", "--arg", "a=1", "--arg", "b=2",
                                        "-v"]):
        code, out, err = run(argv, creds(stack))
        assert code == 0, err
        assert "mcpauth: DEBUG: " in err and "Traceback" not in err
        assert SECRET_LIKE not in err and "api_key" not in err


def test_verbose_shows_the_traceback_of_an_internal_error_only(monkeypatch):
    def boom(args, out):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "demo", boom)
    err = io.StringIO()
    assert cli.main(["demo", "-v"], stdout=io.StringIO(), stderr=err) == cli.EXIT_INTERNAL
    assert "Traceback" in err.getvalue() and "RuntimeError: a bug" in err.getvalue()

    def refused(args, out):
        try:
            raise ValueError("inner detail with " + SECRET_LIKE)
        except ValueError as exc:
            raise ProtocolError("outer message") from exc

    monkeypatch.setitem(cli._COMMANDS, "demo", refused)
    err = io.StringIO()
    assert cli.main(["demo", "-v"], stdout=io.StringIO(), stderr=err) == cli.EXIT_PROTOCOL
    assert one_error_line(err.getvalue()) == "mcpauth: error: outer message"


# ---------------------------------------------------------------- exit statuses


def test_no_credentials_is_a_usage_error(stack):
    code, out, err = run(["token", stack.mcp_url])
    assert code == cli.EXIT_USAGE
    assert "MCPAUTH_CLIENT_ID" in one_error_line(err)
    assert out == ""
    assert stack.as_.requests == [] and stack.mcp.requests == []


def test_a_refused_secret_exits_3(stack):
    env = dict(creds(stack), MCPAUTH_CLIENT_SECRET=SECRET_LIKE)
    code, out, err = run(["token", stack.mcp_url], env)
    assert code == cli.EXIT_AUTH
    assert "invalid_client" in one_error_line(err)
    assert out == "" and SECRET_LIKE not in err


def test_another_authorization_server_than_expected_exits_3_before_any_token_request(stack):
    code, out, err = run(["token", stack.mcp_url, "--expected-issuer",
                          "https://as.example.com"], creds(stack))
    assert code == cli.EXIT_AUTH
    assert "expected_issuer" in one_error_line(err)
    assert stack.as_.token_requests() == []


def test_an_unreachable_server_exits_4():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    code, out, err = run(["token", "http://127.0.0.1:%d/mcp" % port],
                         {"MCPAUTH_CLIENT_ID": "c", "MCPAUTH_CLIENT_SECRET": SECRET_LIKE})
    assert code == cli.EXIT_NETWORK
    assert "could not connect" in one_error_line(err)
    assert SECRET_LIKE not in out + err


def test_a_broken_authorization_server_document_exits_5(stack):
    stack.as_.metadata_override = {"issuer": "https://impostor.example.com"}
    code, out, err = run(["token", stack.mcp_url], creds(stack))
    assert code == cli.EXIT_PROTOCOL
    one_error_line(err)
    assert stack.as_.token_requests() == []


def test_an_unknown_tool_exits_5_and_a_failing_tool_exits_1(stack, tmp_path):
    env = dict(creds(stack), MCPAUTH_CACHE=str(tmp_path / "cache.json"))
    code, out, err = run(["call", stack.mcp_url, "no-such-tool"], env)
    assert code == cli.EXIT_PROTOCOL
    assert "no-such-tool" in one_error_line(err)
    code, out, err = run(["call", stack.mcp_url, "fail"], env)
    assert code == cli.EXIT_TOOL_ERROR, err
    assert json.loads(out)["isError"] is True
    assert err == ""


@pytest.mark.parametrize("exc, status", [
    (cli.UsageError("x"), cli.EXIT_USAGE),
    (ConfigurationError("x"), cli.EXIT_USAGE),
    (InsecureEndpointError("x"), cli.EXIT_USAGE),
    (OAuthError("invalid_client"), cli.EXIT_AUTH),
    (OAuthError("invalid_scope", status_code=400), cli.EXIT_AUTH),
    (OAuthError("temporarily_unavailable"), cli.EXIT_NETWORK),
    (OAuthError("invalid_request", status_code=503), cli.EXIT_NETWORK),
    (UnauthorizedError("x"), cli.EXIT_AUTH),
    (InsufficientScopeError("x"), cli.EXIT_AUTH),
    (AuthorizationServerMismatchError("x"), cli.EXIT_AUTH),
    (TransportError("x"), cli.EXIT_NETWORK),
    (IssuerMismatchError("x"), cli.EXIT_PROTOCOL),
    (ResourceMismatchError("x"), cli.EXIT_PROTOCOL),
    (DiscoveryError("x", status_code=404), cli.EXIT_PROTOCOL),
    (TokenResponseError("x"), cli.EXIT_PROTOCOL),
    (ProtocolError("x"), cli.EXIT_PROTOCOL),
    (ProtocolError("x", status_code=400), cli.EXIT_PROTOCOL),
    (ProtocolError("x", status_code=404), cli.EXIT_PROTOCOL),
    (ProtocolError("x", status_code=503), cli.EXIT_NETWORK),
    (ProtocolError("x", status_code=502), cli.EXIT_NETWORK),
    (ProtocolError("x", status_code=429), cli.EXIT_NETWORK),
    (ProtocolError("x", status_code=408), cli.EXIT_NETWORK),
    (ProtocolError("x", status_code=401), cli.EXIT_AUTH),
    (ProtocolError("x", status_code=403), cli.EXIT_AUTH),
    (MCPError("x", code=-32000, status_code=403), cli.EXIT_AUTH),
    (MCPError("x", code=-32603, status_code=500), cli.EXIT_NETWORK),
    (MCPError("x", code=-32602, status_code=200), cli.EXIT_PROTOCOL),
    (TokenResponseError("x", status_code=401), cli.EXIT_AUTH),
    (TokenResponseError("x", status_code=200), cli.EXIT_PROTOCOL),
    (DiscoveryError("x", status_code=403), cli.EXIT_PROTOCOL),
    (requests.exceptions.ConnectionError("x"), cli.EXIT_NETWORK),
    (requests.exceptions.ReadTimeout("x"), cli.EXIT_NETWORK),
    (requests.exceptions.MissingSchema("x"), cli.EXIT_USAGE),
    (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
    (KeyError("x"), cli.EXIT_INTERNAL),
])
def test_exit_status_table(exc, status):
    assert cli.exit_code_for(exc) == status


@pytest.mark.parametrize("status, error, expected", [
    (503, None, cli.EXIT_NETWORK), (502, None, cli.EXIT_NETWORK),
    (429, None, cli.EXIT_NETWORK), (500, None, cli.EXIT_NETWORK),
    (403, "forbidden", cli.EXIT_AUTH), (413, None, cli.EXIT_PROTOCOL),
])
def test_mcp_server_http_errors_exit_as_documented(stack, tmp_path, status, error, expected):
    """A 5xx or 429 from the MCP server is transient (4), a plain 403 is a refusal (3),
    whatever the body; the message names the real status (not an initialize error)."""
    env = dict(creds(stack), MCPAUTH_CACHE=str(tmp_path / "cache.json"))
    assert run(["tools", stack.mcp_url], env)[0] == 0  # a cached token first
    stack.mcp.fail_next(status, count=5, error=error)
    code, out, err = run(["call", stack.mcp_url, "add", "--arg", "a=1", "--arg", "b=2"], env)
    assert code == expected, err
    assert one_error_line(err).endswith("failed with HTTP {}".format(status))
    assert "initialize" not in err and out == ""


def test_mcp_errors_are_protocol_errors():
    assert cli.exit_code_for(MCPError("Unknown tool", code=-32602)) == cli.EXIT_PROTOCOL


def test_an_internal_error_shows_only_its_type(monkeypatch):
    def boom(args, out):
        raise RuntimeError("something with " + SECRET_LIKE)

    monkeypatch.setitem(cli._COMMANDS, "demo", boom)
    err = io.StringIO()
    assert cli.main(["demo"], stdout=io.StringIO(), stderr=err) == cli.EXIT_INTERNAL
    assert "RuntimeError" in one_error_line(err.getvalue())
    assert SECRET_LIKE not in err.getvalue()


def test_help_documents_exit_statuses_and_environment():
    out = io.StringIO()
    assert cli.main(["--help"], stdout=out, stderr=io.StringIO()) == 0
    # argparse writes help to sys.stdout; check the parser text instead.
    text = cli.build_parser().format_help()
    for needle in ("exit status", "3 authorization refused", "4 network",
                   "MCPAUTH_CLIENT_SECRET", "--client-secret-file", "token", "discover",
                   "HTTP 401 or 403 from the MCP server", "HTTP 408, 429 or 5xx"):
        assert needle in text


# ---------------------------------------------------------------- tools and call


def test_tools_and_call_print_json(stack):
    code, out, err = run(["tools", stack.mcp_url], creds(stack))
    assert code == 0, err
    tools = json.loads(out)
    assert "add" in [t["name"] for t in tools]
    code, out, err = run(["call", stack.mcp_url, "add", "--arg", "a=2", "--arg", "b:=3.5"],
                         creds(stack))
    assert code == 0, err
    result = json.loads(out)
    assert result["structuredContent"] == {"result": 5.5}
    assert stack.client_secret not in out + err
    assert not TOKEN_PATTERN.search(out + err)


def test_warm_cache_run_makes_one_http_request(stack, tmp_path):
    cache = tmp_path / "state" / "tokens.json"
    env = dict(creds(stack), MCPAUTH_CACHE=str(cache))
    code, out, err = run(["call", stack.mcp_url, "add", "--json", '{"a": 1, "b": 2}'], env)
    assert code == 0, err
    assert len(stack.as_.token_requests()) == 1
    # Cold: the call, refused without a token, then replayed; no server/discover.
    assert [(r.info.get("jsonrpc_method"), r.status) for r in stack.mcp.calls()] == [
        ("tools/call", 200)]
    assert [r.status for r in stack.mcp.mcp_requests()] == [401, 200]
    stack.as_.reset_records()
    stack.mcp.reset_records()

    code, out, err = run(["call", stack.mcp_url, "add", "--json", '{"a": 1, "b": 2}'], env)
    assert code == 0, err
    assert json.loads(out)["structuredContent"] == {"result": 3}
    assert stack.as_.requests == []
    records = stack.mcp.requests
    assert [(r.method, r.url_path, r.info.get("jsonrpc_method")) for r in records] == [
        ("POST", "/mcp", "tools/call")]
    # And a token printed from the warm cache needs no request at all.
    stack.mcp.reset_records()
    code, out, err = run(["token", stack.mcp_url, "--cache", str(cache)], creds(stack))
    assert code == 0, err
    assert stack.as_.requests == [] and stack.mcp.requests == []
    assert out.strip() in cache.read_text()
    assert stat.S_IMODE(os.stat(str(cache)).st_mode) == 0o600
    assert stack.client_secret not in cache.read_text()


def test_a_corrupt_cache_file_is_one_warning_line_and_the_run_succeeds(stack, tmp_path):
    cache = tmp_path / "tokens.json"
    cache.write_text("this is not json")
    os.chmod(str(cache), 0o600)  # a 0644 file would add a second warning (tightened)
    code, out, err = run(["token", stack.mcp_url, "--cache", str(cache)], creds(stack))
    assert code == 0, err
    assert err.splitlines() == [
        "mcpauth: warning: ignoring the token cache {}: it is not JSON; it will be "
        "rewritten".format(cache)]
    assert out.strip() in cache.read_text()


def test_a_legacy_server_is_detected_from_the_call_itself(tmp_path):
    with LoopbackStack(mcp_options={"legacy_only": True, "sessions": True}) as legacy:
        env = dict(creds(legacy), MCPAUTH_CACHE=str(tmp_path / "tokens.json"))
        for _ in range(2):  # cold, then warm: the same detection each time
            legacy.mcp.reset_records()
            code, out, err = run(["call", legacy.mcp_url, "add", "--json",
                                  '{"a": 1, "b": 2}'], env)
            assert code == 0, err
            assert json.loads(out)["structuredContent"] == {"result": 3}
            calls = [(r.method, r.info.get("jsonrpc_method"), r.status)
                     for r in legacy.mcp.mcp_requests() if r.status != 401]
            assert calls == [("POST", "tools/call", 400), ("POST", "initialize", 200),
                             ("POST", "notifications/initialized", 202),
                             ("POST", "tools/call", 200), ("DELETE", None, 200)]
        assert len(legacy.as_.token_requests()) == 1


def test_bring_your_own_token_from_the_environment(stack):
    token = stack.as_.issue_token(client_id="gateway", resource=stack.mcp.resource)
    code, out, err = run(["call", stack.mcp_url, "whoami"], {"MCPAUTH_TOKEN": token})
    assert code == 0, err
    assert json.loads(out)["structuredContent"]["client_id"] == "gateway"
    assert token not in out + err
    assert stack.as_.requests == []


def test_a_refused_own_token_exits_3(stack, tmp_path):
    path = tmp_path / "token"
    path.write_text("not-a-valid-token\n")
    code, out, err = run(["tools", stack.mcp_url, "--token-file", str(path)])
    assert code == cli.EXIT_AUTH
    assert "401" in one_error_line(err)
    assert "not-a-valid-token" not in out + err


# ---------------------------------------------------------------- private key, workload


@pytest.mark.crypto
@needs_cryptography
def test_private_key_file(stack, tmp_path):
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from mcpauth import jws

    key = ec.generate_private_key(ec.SECP256R1(), default_backend())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    stack.as_.register_client("jwt-client", public_jwk=jws.public_jwk(key),
                              auth_method="private_key_jwt")
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    code, out, err = run(["token", stack.mcp_url, "--client-id", "jwt-client",
                          "--private-key-file", str(path), "--key-id", "k1", "-v"])
    assert code == 0, err
    record = stack.as_.token_requests()[0]
    assert record.info["auth_method"] == "private_key_jwt"
    assert record.info["client_assertion_header"]["kid"] == "k1"
    assert stack.as_.introspect(out.strip())["client_id"] == "jwt-client"
    assert "PRIVATE KEY" not in out + err
    assert record.form["client_assertion"] not in out + err


@pytest.mark.crypto
@needs_cryptography
def test_workload_token_file(stack, tmp_path):
    from mcpauth import jws

    key = jws.generate_private_key("EC")
    stack.as_.trust_workload_issuer("https://platform.example", key.public_jwk())
    now = int(time.time())
    jwt = jws.sign({"iss": "https://platform.example", "sub": "job-1", "aud": stack.issuer,
                    "iat": now, "exp": now + 300, "jti": "j1"}, key)
    path = tmp_path / "workload.jwt"
    path.write_text(jwt + "\n")
    code, out, err = run(["token", stack.mcp_url],
                         {"MCPAUTH_WORKLOAD_TOKEN_FILE": str(path)})
    assert code == 0, err
    record = stack.as_.token_requests()[0]
    assert record.info["assertion_kind"] == "workload"
    assert stack.as_.introspect(out.strip())["sub"] == "job-1"
    assert jwt not in out + err


def test_two_kinds_of_credentials_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MCPAUTH_CLIENT_SECRET", SECRET_LIKE)
    monkeypatch.setenv("MCPAUTH_TOKEN", SECRET_LIKE)
    err = io.StringIO()
    assert cli.main(["token", "https://mcp.example.com/mcp"], io.StringIO(), err) == 2
    assert "more than one kind" in one_error_line(err.getvalue())
    assert SECRET_LIKE not in err.getvalue()
    (tmp_path / "s").write_text("x")
    (tmp_path / "t").write_text("y")
    err = io.StringIO()
    assert cli.main(["token", "https://mcp.example.com/mcp", "--client-secret-file",
                     str(tmp_path / "s"), "--token-file", str(tmp_path / "t")],
                    io.StringIO(), err) == 2
    assert "choose one" in one_error_line(err.getvalue())


def test_flags_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MCPAUTH_CLIENT_ID", "from-env")
    monkeypatch.setenv("MCPAUTH_TOKEN", "env-token")
    (tmp_path / "s").write_text("file-secret\n")
    parser = cli.build_parser()
    args = cli._parse(parser, ["token", "https://mcp.example.com/mcp", "--client-id", "flag",
                               "--client-secret-file", str(tmp_path / "s")])
    provider = cli.build_provider(args, "https://mcp.example.com/mcp")
    assert type(provider).__name__ == "ClientCredentialsProvider"
    assert provider.client_id == "flag"


@pytest.mark.parametrize("argv, env", [
    (["--timeout", "0"], {}), (["--timeout", "-3"], {}), (["--timeout", "nan"], {}),
    ([], {"MCPAUTH_TIMEOUT": "soon"}),
])
def test_a_bad_timeout_is_a_usage_error(argv, env, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MCPAUTH_TOKEN", "t")
    err = io.StringIO()
    code = cli.main(["tools", "https://mcp.example.com/mcp"] + argv, io.StringIO(), err)
    assert code == cli.EXIT_USAGE
    assert "timeout" in one_error_line(err.getvalue())


def test_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MCPAUTH_TIMEOUT", "7.5")
    monkeypatch.setenv("MCPAUTH_SCOPE", "a b")
    monkeypatch.setenv("MCPAUTH_EXPECTED_ISSUER", "https://as.example.com")
    args = cli._parse(cli.build_parser(), ["token", "https://mcp.example.com/mcp",
                                          "--scope", "flag"])
    assert cli._option(args, "timeout") == 7.5
    assert cli._option(args, "scope") == "flag"
    assert cli._option(args, "expected_issuer") == "https://as.example.com"
    assert cli._option(args, "issuer") is None


def test_unreadable_or_empty_credential_files_are_usage_errors(tmp_path):
    (tmp_path / "empty").write_text("\n")
    for path, needle in ((tmp_path / "missing", "cannot read"), (tmp_path / "empty", "empty")):
        err = io.StringIO()
        code = cli.main(["token", "https://mcp.example.com/mcp", "--client-id", "c",
                         "--client-secret-file", str(path)], io.StringIO(), err)
        assert code == cli.EXIT_USAGE
        assert needle in one_error_line(err.getvalue())


# ---------------------------------------------------------------- discover


def test_discover_needs_no_credentials(stack):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["discover", stack.mcp_url], out, err) == 0, err.getvalue()
    info = json.loads(out.getvalue())
    assert info["issuer"] == stack.issuer
    assert info["authorization_servers"] == [stack.issuer]
    assert info["resource"] == stack.mcp.resource
    assert info["token_endpoint"] == stack.as_.token_endpoint
    assert info["protected_resource_metadata_url"] == stack.mcp.prm_url
    assert info["client_authentication"] == "client_secret_basic"
    assert info["found_via"] == "well-known URL"
    assert stack.as_.token_requests() == []


def test_discover_from_the_401_challenge_in_a_subprocess():
    with LoopbackStack(mcp_options={"prm_location": "custom", "scopes_supported": ["x"],
                                    "challenge_scope": "tools:read"},
                       as_options={"token_endpoint_auth_methods_supported":
                                   ["client_secret_post"]}) as stack:
        code, out, err = run(["discover", stack.mcp_url])
        assert code == 0, err
        info = json.loads(out)
        assert info["found_via"].startswith("401 challenge")
        assert info["protected_resource_metadata_url"] == stack.mcp.prm_url
        assert info["client_authentication"] == "client_secret_post"
        assert info["scope"] == "tools:read"
        assert info["scopes_supported"] == ["x"]
        assert stack.as_.token_requests() == []
        assert all("Authorization" not in r.headers for r in stack.mcp.requests)


def test_discover_with_a_private_key_reports_private_key_jwt(stack, monkeypatch):
    monkeypatch.setenv("MCPAUTH_PRIVATE_KEY_FILE", "/nonexistent/never-read.pem")
    out = io.StringIO()
    assert cli.main(["discover", stack.mcp_url], out, io.StringIO()) == 0
    assert json.loads(out.getvalue())["client_authentication"] == "private_key_jwt"


# ---------------------------------------------------------------- arguments


def test_tool_arguments():
    parse = cli.parse_tool_arguments
    assert parse(["a=2", "b=x", "c=true", "d:=[1]", 'e="7"', "f=", "g=a=b"], None) == {
        "a": 2, "b": "x", "c": True, "d": [1], "e": "7", "f": "", "g": "a=b"}
    assert parse(["a=1"], '{"a": 0, "b": {"c": null}}') == {"a": 1, "b": {"c": None}}
    for bad_pairs, bad_json in ((["novalue"], None), (["=1"], None), (["k:=not json"], None),
                                ([], "[1]"), ([], "{bad")):
        with pytest.raises(cli.UsageError):
            parse(bad_pairs, bad_json)


# ---------------------------------------------------------------- demo and vendoring


@needs_cryptography
def test_demo_passes_every_flow_quickly_and_prints_no_token():
    start = time.monotonic()
    code, out, err = run(["demo"])
    elapsed = time.monotonic() - start
    assert code == 0, out + err
    assert err == ""
    assert out.rstrip().splitlines()[-1].startswith("demo: all ")
    for name in ("Client secret", "Private key JWT", "Bring your own token",
                 "Cross-app access", "Workload identity", "FileTokenCache"):
        assert name in out
    assert "FAILED" not in out
    assert not TOKEN_PATTERN.search(out), TOKEN_PATTERN.search(out).group()
    assert elapsed < 15


@needs_cryptography
def test_demo_reports_a_failing_flow_and_exits_1(monkeypatch):
    from mcpauth import _demo

    def broken(client_cls, url, auth):
        raise RuntimeError("flow broke")

    monkeypatch.setattr(_demo, "_use_server", broken)
    out = io.StringIO()
    assert cli.main(["demo"], out, io.StringIO()) == 1
    text = out.getvalue()
    assert "FAILED: RuntimeError: flow broke" in text
    assert text.rstrip().splitlines()[-1].startswith("demo: 5 of 6 flows FAILED")


_WITHOUT_CRYPTOGRAPHY = """
import sys
class Blocker(object):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "cryptography":
            raise ImportError("blocked by the test")
    def find_module(self, name, path=None):
        self.find_spec(name, path)
sys.meta_path.insert(0, Blocker())
from mcpauth.cli import main
sys.exit(main(["demo"]))
"""


def test_demo_without_cryptography_skips_the_signing_flows_and_exits_0():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _WITHOUT_CRYPTOGRAPHY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "skipped (they sign JWTs and need the cryptography package)" in out
    assert out.rstrip().splitlines()[-1].startswith("demo: all 3 flows passed")


def test_the_command_works_vendored(tmp_path, stack):
    vendor = tmp_path / "hostpkg" / "_vendor"
    shutil.copytree(str(ROOT / "mcpauth"), str(vendor / "mcpauth"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "hostpkg" / "__init__.py").write_text("")
    (vendor / "__init__.py").write_text("")
    code, out, err = run(["hostpkg._vendor.mcpauth", "--version"], cwd=str(tmp_path),
                         pythonpath=str(tmp_path))
    assert code == 0, err
    assert out.strip() == "mcpauth " + __version__
    code, out, err = run(["hostpkg._vendor.mcpauth", "token", stack.mcp_url],
                         creds(stack), cwd=str(tmp_path), pythonpath=str(tmp_path))
    assert code == 0, err
    assert stack.as_.introspect(out.strip()) is not None
