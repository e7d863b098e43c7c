"""The ``mcpauth`` command as a new user meets it, run for real in subprocesses.

``mcpauth key`` (generate, inspect, encrypted keys), the assertion command for keys in
an HSM or a KMS, cross-app mode, per-subcommand help, and error messages that name the
variable, path, endpoint or URL at fault (contract tests: the messages are quoted).
"""

import importlib.util
import json
import os
import stat
import sys
import textwrap

import pytest

from mcpauth.testing import LoopbackStack

from test_cli import SECRET_LIKE, TOKEN_PATTERN, creds, one_error_line, run

needs_cryptography = pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None, reason="needs the cryptography package")


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


def origin_of(url):
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return "{}://{}".format(parts.scheme, parts.netloc)


# ---------------------------------------------------------------- mcpauth key


@needs_cryptography
def test_key_generate_writes_0600_files_and_the_printed_jwk_gets_a_token(stack, tmp_path):
    from mcpauth import jws

    private = tmp_path / "client.pem"
    code, out, err = run(["key", "generate", str(private)])
    assert code == 0, err
    assert err == ""
    info = json.loads(out)
    public = tmp_path / "client.pem.pub.jwk"
    assert info["private_key_file"] == str(private)
    assert info["public_key_file"] == str(public)
    for path in (private, public):
        assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    jwk = json.loads(public.read_text())
    assert jwk == info["public_jwk"] and "d" not in jwk
    assert jwk["kid"] == info["kid"] == jws.jwk_thumbprint(jwk)  # RFC 7638
    assert (jwk["alg"], jwk["use"], jwk["kty"], jwk["crv"]) == ("ES256", "sig", "EC", "P-256")
    assert "PRIVATE KEY" not in out
    assert jws.load_private_key(private.read_bytes()).thumbprint() == info["kid"]

    stack.as_.register_client("key-client", public_jwk=jwk, auth_method="private_key_jwt")
    code, out, err = run(["token", stack.mcp_url, "--client-id", "key-client",
                          "--private-key-file", str(private), "--key-id=" + info["kid"]])
    assert code == 0, err
    assertion = stack.as_.token_requests()[-1].form["client_assertion"]
    assert jws.decode_unverified(assertion)[0]["kid"] == info["kid"]

    code, out, err = run(["key", "inspect", str(private)])
    assert code == 0, err
    inspected = json.loads(out)
    assert inspected["kid"] == info["kid"] and inspected["public_jwk"] == jwk
    assert inspected["file_mode"] == "0600"


@needs_cryptography
@pytest.mark.parametrize("kind, kty, alg", [("RSA", "RSA", "RS256"),
                                            ("Ed25519", "OKP", "EdDSA"),
                                            ("P-384", "EC", "ES384")])
def test_key_generate_types(tmp_path, kind, kty, alg):
    code, out, err = run(["key", "generate", str(tmp_path / "k"), "--type", kind])
    assert code == 0, err
    info = json.loads(out)
    assert (info["kty"], info["alg"]) == (kty, alg)
    if kind == "RSA":
        assert info["key_size"] == 3072


@needs_cryptography
def test_key_generate_never_overwrites(tmp_path):
    existing = tmp_path / "client.pem"
    existing.write_text("keep me")
    code, out, err = run(["key", "generate", str(existing)])
    assert code == 2
    assert one_error_line(err) == ("mcpauth: error: {} exists; mcpauth key generate never "
                                   "overwrites a key".format(existing))
    assert existing.read_text() == "keep me"
    # The public file existing leaves no private key behind either.
    (tmp_path / "b.pem.pub.jwk").write_text("{}")
    code, out, err = run(["key", "generate", str(tmp_path / "b.pem")])
    assert code == 2 and not (tmp_path / "b.pem").exists()


def _encrypted_key(tmp_path, password):
    """``mcpauth key generate`` of a key encrypted with ``password``: its path, the
    password's file and what the command printed."""
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    private = tmp_path / "enc.pem"
    code, out, err = run(["key", "generate", str(private), "--password-file",
                          str(password_file)])
    assert code == 0, err
    return private, password_file, json.loads(out)


@needs_cryptography
def test_an_encrypted_key_from_a_password_file_or_variable(stack, tmp_path):
    private, password_file, info = _encrypted_key(tmp_path, "correct horse")
    assert info["encrypted"] is True and b"ENCRYPTED" in private.read_bytes()
    stack.as_.register_client("enc-client", public_jwk=info["public_jwk"],
                              auth_method="private_key_jwt")
    argv = ["token", stack.mcp_url, "--client-id", "enc-client", "--private-key-file",
            str(private)]

    code, out, err = run(argv)
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: the key given by --private-key-file: the PEM key is encrypted and "
        "no password was given; give its password with --private-key-password-file FILE "
        "or MCPAUTH_PRIVATE_KEY_PASSWORD (or _FILE)")

    code, out, err = run(argv + ["--private-key-password-file", str(password_file)])
    assert code == 0, err
    code, out, err = run(argv, {"MCPAUTH_PRIVATE_KEY_PASSWORD": "correct horse"})
    assert code == 0, err
    code, out, err = run(argv, {"MCPAUTH_PRIVATE_KEY_PASSWORD_FILE": str(password_file)})
    assert code == 0, err
    code, out, err = run(argv, {"MCPAUTH_PRIVATE_KEY_PASSWORD": "wrong horse"})
    assert code == 2
    assert "malformed data or wrong password" in one_error_line(err)
    assert "wrong horse" not in err and "correct horse" not in err

    code, out, err = run(["key", "inspect", str(private)],
                         {"MCPAUTH_PRIVATE_KEY_PASSWORD_FILE": str(password_file)})
    assert code == 0, err
    assert json.loads(out)["kid"] == info["kid"]


@needs_cryptography
def test_key_inspect_warns_about_a_key_others_can_read(tmp_path):
    from mcpauth import jws

    path = tmp_path / "open.pem"
    key = jws.generate_private_key("EC")
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key._key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    os.chmod(str(path), 0o644)
    code, out, err = run(["key", "inspect", str(path)])
    assert code == 0
    assert json.loads(out)["kid"] == key.thumbprint()
    assert err == "mcpauth: warning: {} can be read by other users (mode 0644); chmod 600 " \
                  "it\n".format(path)


def test_key_without_an_action_is_a_usage_error():
    code, out, err = run(["key"])
    assert code == 2
    assert "generate or inspect" in one_error_line(err)


# ---------------------------------------------------------------- help


def test_subcommand_help_is_short_and_points_at_the_full_help():
    full = run(["--help"])[1]
    assert "exit status:" in full and "cross-app access" in full
    for command in ("token", "tools", "call", "discover", "key"):
        code, out, err = run([command, "--help"])
        assert code == 0
        assert "exit status:" not in out and "examples:\n  curl" not in out
        assert "mcpauth --help" in out
    token_help = run(["token", "--help"])[1]
    assert "--private-key-password-file" in token_help and "--assertion-command" in token_help


def test_discover_help_lists_no_credential_flags_but_accepts_them(stack):
    out = run(["discover", "--help"])[1]
    for flag in ("--client-id", "--client-secret-file", "--private-key-file", "--token-file",
                 "--cache", "credentials:"):
        assert flag not in out
    code, out, err = run(["discover", stack.mcp_url, "--client-id", "c"])
    assert code == 0, err


# ---------------------------------------------------------------- errors: where and how


def test_a_wrong_secret_names_the_token_endpoint_client_id_and_method(stack):
    code, out, err = run(["token", stack.mcp_url],
                         {"MCPAUTH_CLIENT_ID": stack.client_id,
                          "MCPAUTH_CLIENT_SECRET": "wrong-" + SECRET_LIKE})
    assert code == 3
    assert one_error_line(err) == (
        "mcpauth: error: invalid_client from the token endpoint {} (client id {!r}, client "
        "authentication client_secret_basic): client authentication failed".format(
            stack.as_.token_endpoint, stack.client_id))
    assert SECRET_LIKE not in err


@pytest.mark.parametrize("command", ["token", "tools", "discover"])
def test_a_url_without_its_path_gets_a_hint(stack, command):
    origin = origin_of(stack.mcp_url)
    code, out, err = run([command, origin], creds(stack))
    assert code == 5
    assert one_error_line(err).endswith(
        "; the URL {0} has no path, and MCP servers are usually at one: did you mean "
        "{0}/mcp?".format(origin))
    code, out, err = run([command, stack.mcp_url + "-admin"], creds(stack))
    assert code != 0 and "has no path" not in err


@pytest.mark.parametrize("name, what", [("timeout", "the timeout of each HTTP request"),
                                        ("call_timeout", "the deadline of each MCP call")])
def test_a_bad_timeout_names_the_variable_or_flag(name, what):
    variable, flag = "MCPAUTH_" + name.upper(), "--" + name.replace("_", "-")
    env = {"MCPAUTH_TOKEN": "t", variable: "abc"}
    code, out, err = run(["tools", "https://mcp.example.com/mcp"], env)
    assert code == 2
    assert one_error_line(err) == ("mcpauth: error: {} must be a positive number of seconds "
                                   "({})".format(variable, what))
    # refused even by a command that makes no MCP call
    code, out, err = run(["token", "https://mcp.example.com/mcp"], env)
    assert code == 2 and variable + " must be" in one_error_line(err)
    for value in ("-1", "0", "inf"):
        code, out, err = run(["tools", "https://mcp.example.com/mcp", flag, value], env)
        assert code == 2
        assert one_error_line(err).startswith(
            "mcpauth: error: {} must be a positive".format(flag)), err


@pytest.mark.parametrize("name", ["secret.txt", "missing-dir/secret"])
def test_an_unreadable_file_is_named_with_its_variable(tmp_path, name):
    missing = tmp_path / name
    code, out, err = run(["token", "https://mcp.example.com/mcp"],
                         {"MCPAUTH_CLIENT_ID": "c", "MCPAUTH_CLIENT_SECRET_FILE": str(missing)})
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: cannot read the file {} given by MCPAUTH_CLIENT_SECRET_FILE (No "
        "such file or directory)".format(missing))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, out, err = run(["token", "https://mcp.example.com/mcp", "--client-id", "c",
                          "--client-secret-file", str(empty)])
    assert one_error_line(err) == (
        "mcpauth: error: the file {} given by --client-secret-file is empty".format(empty))


@pytest.mark.parametrize("value", [
    SECRET_LIKE, "c2VjcmV0/dmFsdWU+cGFzc3dvcmQ=", "s3cr3t.with.dots",
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"])
def test_a_secret_given_where_a_file_name_belongs_is_not_shown(value):
    code, out, err = run(["token", "https://mcp.example.com/mcp"],
                         {"MCPAUTH_CLIENT_ID": "c", "MCPAUTH_CLIENT_SECRET_FILE": value})
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: cannot read the file given by MCPAUTH_CLIENT_SECRET_FILE (its name "
        "is not shown: it does not look like a path and could be a misplaced secret) (No "
        "such file or directory)")
    assert value not in err


def test_a_relative_file_name_is_shown(tmp_path):
    code, out, err = run(["token", "https://mcp.example.com/mcp"],
                         {"MCPAUTH_CLIENT_ID": "c", "MCPAUTH_CLIENT_SECRET_FILE": "secret.txt"},
                         cwd=str(tmp_path))
    assert one_error_line(err) == (
        "mcpauth: error: cannot read the file secret.txt given by MCPAUTH_CLIENT_SECRET_FILE "
        "(No such file or directory)")


def test_a_misspelt_variable_is_pointed_out():
    code, out, err = run(["token", "https://mcp.example.com/mcp"],
                         {"MCPAUTH_CLIENT_ID": "c", "MCPAUTH_CLIENT_SECRT": SECRET_LIKE})
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: no credentials: set MCPAUTH_CLIENT_ID and MCPAUTH_CLIENT_SECRET (or "
        "pass --client-id and --client-secret-file, --private-key-file, --token-file or "
        "--workload-token-file); MCPAUTH_CLIENT_SECRT (did you mean "
        "MCPAUTH_CLIENT_SECRET?) is not a variable mcpauth reads")
    assert SECRET_LIKE not in err
    code, out, err = run(["token", "https://mcp.example.com/mcp"],
                         {"MCPAUTH_CLIENT_SECRET": "s", "MCPAUTH_CLIENTID": "c"})
    assert one_error_line(err).endswith(
        "MCPAUTH_CLIENTID (did you mean MCPAUTH_CLIENT_ID?) is not a variable mcpauth reads")


def test_every_documented_variable_is_known():
    from mcpauth import cli

    known = cli._known_env(cli.build_parser())
    for name in ("MCPAUTH_SCOPE", "MCPAUTH_CACHE", "MCPAUTH_TIMEOUT", "MCPAUTH_VERBOSE",
                 "MCPAUTH_EXPECTED_ISSUER", "MCPAUTH_CLIENT_ID", "MCPAUTH_CLIENT_SECRET_FILE",
                 "MCPAUTH_PRIVATE_KEY_PASSWORD", "MCPAUTH_ASSERTION_COMMAND",
                 "MCPAUTH_ID_TOKEN_FILE", "MCPAUTH_IDP_URL", "MCPAUTH_PROTOCOL_VERSION",
                 "MCPAUTH_CALL_TIMEOUT", "MCPAUTH_DPOP_KEY_PASSWORD",
                 "MCPAUTH_DPOP_KEY_PASSWORD_FILE"):
        assert name in known
        assert name in cli._EPILOG or name.replace("_FILE", "") in cli._EPILOG or \
            name in ("MCPAUTH_VERBOSE", "MCPAUTH_PROTOCOL_VERSION")


# ---------------------------------------------------------------- assertion command


SIGNER = """\
#!{python}
# Plays a KMS-backed signing helper: prints a client assertion for argv[1].
import json, os, sys, time, uuid, warnings
# A real helper's stderr reaches the job's log; this one's must stay quiet even where
# cryptography warns about an old Python on import (3.6, 3.7).
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
from mcpauth import jws
mode = os.environ.get("HELPER_MODE", "ok")
if mode == "tempfail":
    sys.exit(75)
if mode == "fail":
    sys.stderr.write("helper: KMS said no\\n")
    sys.exit(1)
key = jws.load_private_key(open({key!r}, "rb").read())
client_id = "wrong-client" if mode == "wrong-iss" else {client_id!r}
now = int(time.time())
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
with open({log!r} + ".env", "w") as env_log:
    json.dump(dict((k, v) for k, v in os.environ.items() if k.startswith("MCPAUTH_")), env_log)
print(jws.sign({{"iss": client_id, "sub": client_id, "aud": sys.argv[1], "iat": now,
               "exp": now + 60, "jti": str(uuid.uuid4())}}, key, "ES256"))
"""


@pytest.fixture
def helper(stack, tmp_path):
    from mcpauth import jws

    key = jws.generate_private_key("EC")
    key_path = tmp_path / "hsm-key.pem"
    from cryptography.hazmat.primitives import serialization

    key_path.write_bytes(key._key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    stack.as_.register_client("hsm-client", public_jwk=key.public_jwk(),
                              auth_method="private_key_jwt")
    script = tmp_path / "sign-assertion"
    log = tmp_path / "calls.log"
    script.write_text(SIGNER.format(python=sys.executable, root=str(os.getcwd()),
                                    key=str(key_path), client_id="hsm-client", log=str(log)))
    os.chmod(str(script), 0o700)
    return script, log


@needs_cryptography
def test_an_assertion_command_gets_a_token(stack, helper):
    script, log = helper
    code, out, err = run(["token", stack.mcp_url, "--client-id", "hsm-client",
                          "--assertion-command", str(script)])
    assert code == 0, err
    assert TOKEN_PATTERN.search(out) and err == ""
    assert [json.loads(line) for line in log.read_text().splitlines()] == [[stack.issuer]]
    form = stack.as_.token_requests()[-1].form
    assert form["client_assertion_type"].endswith("jwt-bearer")
    # The same from the environment.
    code, out, err = run(["tools", stack.mcp_url],
                         {"MCPAUTH_CLIENT_ID": "hsm-client",
                          "MCPAUTH_ASSERTION_COMMAND": str(script)})
    assert code == 0, err


@needs_cryptography
@pytest.mark.parametrize("mode, status, message", [
    ("tempfail", 4, "the assertion command {} exited with status 75 (try again later)"),
    ("fail", 2, "the assertion command {} exited with status 1"),
    ("wrong-iss", 2, "the client assertion from the assertion callable has iss other than "
                     "the client id (RFC 7523 §3)"),
])
def test_assertion_command_failures(stack, helper, mode, status, message):
    script, _ = helper
    code, out, err = run(["token", stack.mcp_url, "--client-id", "hsm-client",
                          "--assertion-command", str(script)], {"HELPER_MODE": mode})
    assert code == status
    lines = [line for line in err.splitlines() if not line.startswith("helper:")]
    assert lines == ["mcpauth: error: " + message.format(script)]
    assert stack.as_.token_requests() == []


@needs_cryptography
def test_an_assertion_command_does_not_inherit_mcpauth_credentials(stack, helper, tmp_path):
    # The helper signs with its own key: the credentials mcpauth reads from the
    # environment (a fleet's Redis cache key, a Redis URL with a password, a secret the
    # --assertion-command flag overrides, ...) are not its business.
    script, log = helper
    secrets = {"MCPAUTH_CLIENT_SECRET": "env-secret-5b1f", "MCPAUTH_TOKEN": "env-token-5b1f",
               "MCPAUTH_PRIVATE_KEY": "env-key-5b1f",
               "MCPAUTH_PRIVATE_KEY_PASSWORD": "env-password-5b1f",
               "MCPAUTH_ID_TOKEN": "env-id-token-5b1f",
               "MCPAUTH_IDP_CLIENT_SECRET": "env-idp-secret-5b1f",
               "MCPAUTH_CACHE_KEY": "env-cache-key-5b1f",
               "MCPAUTH_CACHE": str(tmp_path / "tokens.json")}  # or redis://:PASSWORD@...
    code, out, err = run(["token", stack.mcp_url, "--client-id", "hsm-client",
                          "--assertion-command", str(script)], secrets)
    assert code == 0, err
    seen = json.loads((tmp_path / "calls.log.env").read_text())
    assert not set(secrets).intersection(seen)
    assert not any(value in json.dumps(seen) for value in secrets.values())
    # What identifies the client is still there for the helper to read.
    code, out, err = run(["token", stack.mcp_url],
                         {"MCPAUTH_CLIENT_ID": "hsm-client",
                          "MCPAUTH_ASSERTION_COMMAND": str(script)})
    assert code == 0, err
    seen = json.loads((tmp_path / "calls.log.env").read_text())
    assert seen["MCPAUTH_CLIENT_ID"] == "hsm-client"


def test_an_assertion_command_that_is_not_executable(tmp_path):
    code, out, err = run(["token", "https://mcp.example.com/mcp", "--client-id", "c",
                          "--assertion-command", str(tmp_path / "nope")])
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: the assertion command {} (from --assertion-command) is not an "
        "executable file found on PATH".format(tmp_path / "nope"))


# ---------------------------------------------------------------- cross-app


@needs_cryptography
def test_cross_app_mode_end_to_end_and_from_a_warm_cache(tmp_path):
    with LoopbackStack(idp=True) as stack:
        id_token = tmp_path / "id-token"
        id_token.write_text(stack.id_token("alice@example.com") + "\n")
        idp_secret = tmp_path / "idp-secret"
        idp_secret.write_text(stack.idp_client.client_secret)
        secret = tmp_path / "secret"
        secret.write_text(stack.client_secret)
        cache = tmp_path / "cache.json"
        argv = ["call", stack.mcp_url, "whoami", "--id-token-file", str(id_token),
                "--idp-url", stack.idp.issuer, "--idp-client-id", "idp-client",
                "--idp-client-secret-file", str(idp_secret), "--client-id", stack.client_id,
                "--client-secret-file", str(secret), "--cache", str(cache)]
        code, out, err = run(argv)
        assert code == 0, err
        assert json.loads(out)["structuredContent"]["sub"] == "alice@example.com"
        exchanges = len(stack.idp.token_requests())
        assert exchanges == 1
        code, out, err = run(argv)  # warm: the cached token is alice's
        assert code == 0, err
        assert len(stack.idp.token_requests()) == exchanges
        # An ID token that merely claims to be alice's (her iss and sub, forged signature:
        # anyone can write one) never gets her cached token: the IdP refuses it.
        from mcpauth import jws

        genuine = stack.id_token("alice@example.com")
        header, claims = jws.decode_unverified(genuine)
        forged = ".".join([jws.b64url_encode(json.dumps(header).encode()),
                           jws.b64url_encode(json.dumps(claims).encode()),
                           jws.b64url_encode(b"\x00" * 64)])
        id_token.write_text(forged)
        code, out, err = run(["token", stack.mcp_url] + argv[3:])
        assert code != 0 and out == "", out
        assert len(stack.idp.token_requests()) == exchanges + 1
        # Another user's ID token never gets alice's cached token.
        id_token.write_text(stack.id_token("bob@example.com"))
        code, out, err = run(argv)
        assert code == 0, err
        assert json.loads(out)["structuredContent"]["sub"] == "bob@example.com"
        # The same configuration from the environment.
        env = {"MCPAUTH_ID_TOKEN_FILE": str(id_token), "MCPAUTH_IDP_URL": stack.idp.issuer,
               "MCPAUTH_IDP_CLIENT_ID": "idp-client",
               "MCPAUTH_IDP_CLIENT_SECRET": stack.idp_client.client_secret,
               "MCPAUTH_CLIENT_ID": stack.client_id,
               "MCPAUTH_CLIENT_SECRET": stack.client_secret}
        code, out, err = run(["token", stack.mcp_url], env)
        assert code == 0, err
        assert stack.client_secret not in err + out


def test_cross_app_mode_needs_the_idp_and_client_credentials(tmp_path):
    id_token = tmp_path / "id-token"
    id_token.write_text("a.b.c")
    base = ["token", "https://mcp.example.com/mcp", "--id-token-file", str(id_token),
            "--client-id", "c"]
    code, out, err = run(base)
    assert code == 2 and "needs the IdP: pass --idp-url" in one_error_line(err)
    code, out, err = run(base + ["--idp-url", "https://idp.example.com",
                                 "--idp-client-id", "i"])
    assert code == 2 and "also needs the client's credentials" in one_error_line(err)
    code, out, err = run(base + ["--token-file", str(id_token)])
    assert code == 2
    assert one_error_line(err) == ("mcpauth: error: cross-app access cannot be combined "
                                   "with a token")


def test_help_text_mentions_what_the_readme_documents():
    text = textwrap.dedent(run(["--help"])[1])
    for needle in ("--assertion-command", "--id-token-file", "MCPAUTH_PRIVATE_KEY_PASSWORD",
                   "exit status 75"):
        assert needle in text


# ---------------------------------------------------------------- MCP call deadline

def test_call_timeout_option_and_variable(stack):
    import time

    def silence():
        while not stack.mcp._stopping:
            time.sleep(0.05)
            yield b""

    argv = ["tools", stack.mcp_url, "--protocol-version", "2026-07-28"]
    for extra, env in ((["--call-timeout", "1"], {}), ([], {"MCPAUTH_CALL_TIMEOUT": "1"})):
        # A stream that sends its headers, then nothing: only the call's deadline ends it.
        stack.mcp.set_route(stack.mcp.path, 200, None, {"Content-Type": "text/event-stream"},
                            method="POST")
        stack.mcp._routes[stack.mcp.path][0].response.stream = silence()
        started = time.monotonic()
        code, out, err = run(argv + extra, dict(creds(stack), **env))
        assert code == 4, err
        assert "did not complete within the 1 s call timeout" in err
        assert time.monotonic() - started < 15


# ---------------------------------------------------------------- encrypted DPoP key

@needs_cryptography
def test_an_encrypted_dpop_key_from_a_password_file_or_variable(stack, tmp_path):
    dpop, password_file, info = _encrypted_key(tmp_path, "dpop horse")
    assert info["encrypted"] is True
    argv = ["token", stack.mcp_url, "--dpop-key-file", str(dpop)]

    code, out, err = run(argv, creds(stack))
    assert code == 2
    assert one_error_line(err) == (
        "mcpauth: error: the key given by --dpop-key-file: the PEM key is encrypted and "
        "no password was given; give its password with --dpop-key-password-file FILE "
        "or MCPAUTH_DPOP_KEY_PASSWORD (or _FILE)")

    def bound(out):  # RFC 9449 §6: the token is bound to the DPoP key's thumbprint
        return stack.as_.introspect(out.strip())["cnf"] == {"jkt": info["kid"]}

    code, out, err = run(argv + ["--dpop-key-password-file", str(password_file)],
                         creds(stack))
    assert code == 0 and bound(out), err
    code, out, err = run(argv, dict(creds(stack), MCPAUTH_DPOP_KEY_PASSWORD="dpop horse"))
    assert code == 0 and bound(out), err
    code, out, err = run(argv, dict(creds(stack),
                                    MCPAUTH_DPOP_KEY_PASSWORD_FILE=str(password_file)))
    assert code == 0 and bound(out), err
    code, out, err = run(["token", stack.mcp_url],
                         dict(creds(stack), MCPAUTH_DPOP_KEY_FILE=str(dpop),
                              MCPAUTH_DPOP_KEY_PASSWORD="dpop horse"))
    assert code == 0 and bound(out), err
    code, out, err = run(argv, dict(creds(stack), MCPAUTH_DPOP_KEY_PASSWORD="wrong horse"))
    assert code == 2
    assert "malformed data or wrong password" in one_error_line(err)
    assert "wrong horse" not in err and "dpop horse" not in err
    # The client key's password is not the DPoP key's.
    code, out, err = run(argv, dict(creds(stack), MCPAUTH_PRIVATE_KEY_PASSWORD="dpop horse"))
    assert code == 2 and "--dpop-key-password-file" in one_error_line(err)
