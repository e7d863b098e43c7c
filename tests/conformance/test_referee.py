"""Tests of the conformance referee itself (tests/conformance/run.py and client.py).

The verdict rules are tested on synthetic ``checks.json`` data (no Node needed). With the
suite installed (tests/conformance/install.sh), the runner is also run for real: a normal
build passes, and deliberately broken builds fail. The breakage is a monkeypatch applied
by client.py in its own process (``MCPAUTH_CONFORMANCE_BREAK``); mcpauth itself is never
modified. Live tests skip when the suite is not installed, and fail instead when
``MCPAUTH_REQUIRE_NODE=1`` (as in the tox ``conformance`` env).
"""

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("mcpauth_conformance_run",
                                               os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)  # type: ignore[union-attr]

REQUIRE_NODE = os.environ.get("MCPAUTH_REQUIRE_NODE") == "1"
AUTH_CODE_ONLY = {"client-registration", "authorization-request",
                  "resource-parameter-in-authorization", "sep-2352-reregister-on-as-change"}


# --- verdict rules on synthetic results ----------------------------------------------------

def check(check_id: str, status: str = "SUCCESS", **details: Any) -> Dict[str, Any]:
    entry = {"id": check_id, "status": status, "description": check_id}  # type: Dict[str, Any]
    if details:
        entry["details"] = details
    return entry


def judge(tmp_path: Any, scenario: str, checks: Optional[List[Dict[str, Any]]],
          log: str = "", returncode: int = 0, stderr: str = "",
          expected: Tuple[str, ...] = ()) -> List[str]:
    out = tmp_path / "out"
    folder = out / (scenario + "-2026-01-01T00-00-00-000Z")
    folder.mkdir(parents=True)
    if checks is not None:
        (folder / "checks.json").write_text(json.dumps(checks))
    (folder / "stderr.txt").write_text(stderr)
    _, reasons = run.judge(run.Run(scenario), returncode, log, str(out), list(expected))
    return reasons


def test_passing_run_has_no_reasons(tmp_path: Any) -> None:
    checks = [check("token-request"), check("client-credentials-basic-auth")]
    assert judge(tmp_path, "auth/client-credentials-basic", checks) == []


def test_zero_checks_is_a_vacuous_pass(tmp_path: Any) -> None:
    assert judge(tmp_path, "initialize", []) == ["no SUCCESS check: a vacuous pass"]


def test_only_info_checks_is_a_vacuous_pass(tmp_path: Any) -> None:
    reasons = judge(tmp_path, "tools_call", [check("incoming-request", "INFO")])
    assert reasons == ["no SUCCESS check: a vacuous pass",
                       "vacuous pass: no SUCCESS tool-add-numbers"]


def test_missing_checks_json_fails(tmp_path: Any) -> None:
    assert judge(tmp_path, "tools_call", None) == ["expected one checks.json, found 0"]


def test_suite_exit_code_and_skip_fail(tmp_path: Any) -> None:
    reasons = judge(tmp_path, "tools_call", [check("tool-add-numbers")], returncode=1,
                    log="SKIPPED: scenario 'x' is not applicable")
    assert reasons == ["conformance exited 1", "the suite skipped the scenario"]


def test_unexpected_failure_and_warning_fail(tmp_path: Any) -> None:
    checks = [check("token-request"), check("wif-no-retry", "WARNING"),
              check("client-registration", "FAILURE")]
    reasons = judge(tmp_path, "auth/wif-jwt-bearer", checks)
    assert reasons == ["WARNING wif-no-retry: wif-no-retry",
                       "FAILURE client-registration: client-registration"]


def test_baselined_failure_passes_and_stale_entry_fails(tmp_path: Any) -> None:
    checks = [check("token-request"), check("client-registration", "FAILURE"),
              check("authorization-request")]
    reasons = judge(tmp_path, "auth/metadata-default", checks,
                    expected=("client-registration", "authorization-request"))
    assert reasons == ["stale baseline entry auth/metadata-default:authorization-request "
                       "(now passes)"]


def test_client_crash_or_timeout_fails_even_with_a_baseline(tmp_path: Any) -> None:
    log = "\nClient exited with code 1\n\nClient timed out after 30000ms"
    reasons = judge(tmp_path, "auth/metadata-default", [check("token-request")], log=log,
                    expected=("client-registration",))
    assert reasons == ["the client timed out", "the client exited with code 1"]


def test_refusal_scenarios_require_the_refusal(tmp_path: Any) -> None:
    ok = [check("sep-2468-client-validate-metadata-issuer")]
    assert judge(tmp_path, "auth/metadata-issuer-mismatch", ok,
                 log="Client exited with code 2",
                 stderr="client: refused: IssuerMismatchError: ...") == []
    # Exit 0 (the client went on), a crash (exit 1), or another error: all fail.
    for n, (log, stderr) in enumerate([
            ("", ""), ("Client exited with code 1", "Traceback"),
            ("Client exited with code 2", "client: refused: TransportError: x")]):
        reasons = judge(tmp_path / str(n), "auth/metadata-issuer-mismatch", ok, log=log,
                        stderr=stderr)
        assert len(reasons) == 1 and "expected mcpauth to refuse with IssuerMismatchError" \
            in reasons[0]


def test_resource_mismatch_guard(tmp_path: Any) -> None:
    # The suite's own check passes when no /authorize happened, even if the client went on
    # with client_credentials and used the token; the guard does not.
    checks = [check("prm-pathbased-requested"), check("resource-mismatch-rejected"),
              check("token-request"), check("valid-bearer-token", token="test-token-1...")]
    reasons = judge(tmp_path, "auth/resource-mismatch", checks,
                    log="Client exited with code 2",
                    stderr="client: refused: ResourceMismatchError: ...")
    assert reasons == ["vacuous pass: the client went on past a mismatched resource "
                       "(token-request, valid-bearer-token)"]


def test_migration_guard(tmp_path: Any) -> None:
    scenario = "auth/authorization-server-migration"
    good = [check("token-request"), check("token-request"),
            check("valid-bearer-token", token="test-token-as2-...")]
    assert judge(tmp_path / "a", scenario, good) == []
    one_as = [check("token-request"), check("valid-bearer-token", token="test-token-17...")]
    assert judge(tmp_path / "b", scenario, one_as) == [
        "vacuous pass: 1 token request(s); a token from each authorization server is needed",
        "vacuous pass: the MCP server never accepted a token from the second authorization "
        "server"]


def test_wire_scenarios_require_the_checks_they_are_about(tmp_path: Any) -> None:
    # sse-retry: reconnecting is not enough; the timing and Last-Event-ID must succeed too.
    checks = [check("client-sse-graceful-reconnect"),
              check("client-sse-retry-timing", "INFO"), check("incoming-request", "INFO")]
    assert judge(tmp_path / "a", "sse-retry", checks) == [
        "vacuous pass: no SUCCESS client-sse-retry-timing",
        "vacuous pass: no SUCCESS client-sse-last-event-id"]
    # http-standard-headers reuses one id for every method: the check's name counts.
    header = "sep-2243-client-includes-standard-headers"
    checks = [dict(check(header), name="ClientMcpMethodHeader_tools_list"),
              dict(check(header, "SKIPPED"), name="ClientMcpNameHeader_tools_call")]
    assert judge(tmp_path / "b", "http-standard-headers", checks) == [
        "vacuous pass: no SUCCESS %s:ClientMcpMethodHeader_tools_call" % header,
        "vacuous pass: no SUCCESS %s:ClientMcpNameHeader_tools_call" % header]


def test_schema_vocabulary_checks_count_on_the_2026_wire_only(tmp_path: Any) -> None:
    scenario = "json-schema-2020-12-preservation"
    checks = [check(c) for c in run.REQUIRED[scenario]] + [
        check(c, "SKIPPED") for c in run.REQUIRED_2026[scenario]]
    folder = tmp_path / "out" / (scenario + "-2026-01-01T00-00-00-000Z")
    folder.mkdir(parents=True)
    (folder / "checks.json").write_text(json.dumps(checks))
    _, legacy = run.judge(run.Run(scenario), 0, "", str(tmp_path / "out"), [])
    _, modern = run.judge(run.Run(scenario, run.STATELESS_WIRE), 0, "",
                          str(tmp_path / "out"), [])
    assert legacy == []
    assert modern == ["vacuous pass: no SUCCESS " + c for c in run.REQUIRED_2026[scenario]]


# --- baseline file -------------------------------------------------------------------------

def test_committed_baseline_only_excuses_authorization_code_checks() -> None:
    baseline = run.load_baseline(run.BASELINE)
    scenarios = {r.scenario for r in run.RUNS}
    assert baseline and set(baseline) <= scenarios
    for scenario, ids in baseline.items():
        assert set(ids) <= AUTH_CODE_ONLY, scenario
    # The machine-to-machine scenarios have no excuses at all.
    for scenario in ("auth/client-credentials-basic", "auth/client-credentials-jwt",
                     "auth/enterprise-managed-authorization", "auth/wif-jwt-bearer",
                     "auth/pre-registration", "auth/metadata-issuer-mismatch",
                     "auth/resource-mismatch", "initialize", "tools_call"):
        assert scenario not in baseline


@pytest.mark.parametrize("line", ["  - auth/metadata-default: client-registration",
                                  "  - auth/metadata-default", "other:"])
def test_malformed_baseline_is_refused(tmp_path: Any, line: str) -> None:
    path = tmp_path / "baseline.yml"
    path.write_text("client:\n" + line + "\n")
    with pytest.raises(ValueError):
        run.load_baseline(str(path))


def test_run_list() -> None:
    labels = [r.label for r in run.RUNS]
    assert len(labels) == len(set(labels)) == 34
    for scenario in ("auth/client-credentials-basic", "auth/client-credentials-jwt",
                     "auth/enterprise-managed-authorization", "auth/wif-jwt-bearer",
                     "auth/pre-registration", "tools_call",
                     "json-schema-2020-12-preservation"):
        assert {r.wire for r in run.RUNS if r.scenario == scenario} == {
            "2025-11-25", "2026-07-28"}
    # The MCP wire scenarios, each on every wire the suite offers it: 10 runs.
    wire = [r.label for r in run.RUNS if not r.scenario.startswith("auth/")
            and r.scenario != "initialize"]
    assert sorted(wire) == sorted([
        "tools_call @2025-11-25", "tools_call @2026-07-28",
        "http-standard-headers @2026-07-28", "http-custom-headers @2026-07-28",
        "http-invalid-tool-headers @2026-07-28", "sse-retry @2025-11-25",
        "request-metadata @2026-07-28", "json-schema-2020-12-preservation @2025-11-25",
        "json-schema-2020-12-preservation @2026-07-28", "json-schema-ref-no-deref @2026-07-28"])
    assert set(run.REQUIRED) == {r.scenario for r in run.RUNS if r.label in wire} | {
        "auth/dpop", "auth/dpop-nonce"}


def test_missing_node_is_a_failure_not_a_skip(monkeypatch: Any, capsys: Any,
                                              tmp_path: Any) -> None:
    monkeypatch.setattr(run, "NODE", str(tmp_path / "no-node"))
    assert run.main(["--only", "tools_call"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("conformance: ERROR: the conformance suite is not installed")
    assert lines[-1] == "conformance: 0 passed, 2 failed"


# --- the real suite --------------------------------------------------------------------------

def _suite_installed() -> bool:
    return run.check_node() is None


live = pytest.mark.skipif(not REQUIRE_NODE and not _suite_installed(),
                          reason="conformance suite not installed "
                                 "(run tests/conformance/install.sh)")


def run_runner(*args: str, broken: Optional[str] = None) -> Tuple[int, List[str]]:
    env = dict(os.environ)
    env.pop("MCPAUTH_CONFORMANCE_BREAK", None)
    if broken:
        env["MCPAUTH_CONFORMANCE_BREAK"] = broken
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "run.py")] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out.decode("utf-8", "replace").splitlines()


def verdicts(lines: List[str]) -> List[str]:
    return [" ".join(line.split()[:2]) for line in lines if line[:5] in ("PASS ", "FAIL ")]


@pytest.mark.node
@live
def test_runner_passes_a_working_build() -> None:
    code, lines = run_runner("--only", "auth/client-credentials-jwt",
                             "--only", "auth/metadata-issuer-mismatch")
    assert verdicts(lines) == ["PASS auth/client-credentials-jwt",
                               "PASS auth/client-credentials-jwt",
                               "PASS auth/metadata-issuer-mismatch"], "\n".join(lines)
    assert lines[-1] == "conformance: 3 passed, 0 failed"
    assert code == 0


@pytest.mark.node
@live
def test_runner_fails_without_issuer_validation() -> None:
    # RFC 8414 §3.3 check skipped: mcpauth follows the attacker's metadata to its token
    # endpoint, and the suite records the request there.
    code, lines = run_runner("--only", "auth/metadata-issuer-mismatch", broken="issuer")
    text = "\n".join(lines)
    assert verdicts(lines) == ["FAIL auth/metadata-issuer-mismatch"], text
    assert "FAILURE sep-2468-client-validate-metadata-issuer" in text
    assert lines[-1] == "conformance: 0 passed, 1 failed"
    assert code == 1


@pytest.mark.node
@live
def test_runner_fails_with_der_es256_signatures() -> None:
    code, lines = run_runner("--only", "auth/client-credentials-jwt", broken="der")
    text = "\n".join(lines)
    assert verdicts(lines) == ["FAIL auth/client-credentials-jwt"] * 2, text
    assert ("FAILURE client-credentials-jwt-verified: JWT verification failed: signature "
            "verification failed") in text
    assert lines[-1] == "conformance: 0 passed, 2 failed"
    assert code == 1


@pytest.mark.node
@live
def test_runner_catches_the_vacuous_resource_mismatch_pass() -> None:
    # Without the RFC 9728 §3.3 resource check the client gets a token for the evil
    # resource and calls tools. The suite's own check still says SUCCESS (no /authorize);
    # only the runner's guards catch it.
    code, lines = run_runner("--only", "auth/resource-mismatch", broken="resource")
    text = "\n".join(lines)
    assert verdicts(lines) == ["FAIL auth/resource-mismatch"], text
    assert "vacuous pass: the client went on past a mismatched resource" in text
    assert "FAILURE resource-mismatch-rejected" not in text
    assert code == 1


@pytest.mark.node
@live
@pytest.mark.parametrize("broken, scenario, failure", [
    ("mcp-param", "http-custom-headers", "FAILURE sep-2243-client-supports-custom-headers"),
    ("exclusion", "http-invalid-tool-headers", "FAILURE sep-2243-x-mcp-header-charset"),
    ("resume", "sse-retry", "FAILURE client-sse-graceful-reconnect"),
    ("version-retry", "request-metadata", "WARNING sep-2575-client-retry-supported-version"),
])
def test_runner_fails_without_each_wire_behaviour(broken: str, scenario: str,
                                                  failure: str) -> None:
    code, lines = run_runner("--only", scenario, broken=broken)
    text = "\n".join(lines)
    assert verdicts(lines) == ["FAIL " + scenario], text
    assert failure in text
    assert code == 1


def test_dpop_guard_requires_every_sep_1932_check(tmp_path: Any) -> None:
    names = ["sep-1932-client-token-request-proof", "sep-1932-client-dpop-auth-scheme",
             "sep-1932-client-fresh-proof", "sep-1932-client-as-nonce",
             "sep-1932-client-rs-nonce"]
    assert judge(tmp_path / "a", "auth/dpop-nonce", [check(n) for n in names]) == []
    # The suite adds the nonce checks only in the nonce scenario; a result without one
    # (or with other checks only) is a vacuous pass.
    reasons = judge(tmp_path / "b", "auth/dpop-nonce", [check(n) for n in names[:3]])
    assert reasons == ["vacuous pass: no SUCCESS sep-1932-client-as-nonce",
                       "vacuous pass: no SUCCESS sep-1932-client-rs-nonce"]
    reasons = judge(tmp_path / "c", "auth/dpop", [check("token-request")])
    assert len(reasons) == 3


def test_dpop_runs_are_on_both_wires() -> None:
    for scenario in ("auth/dpop", "auth/dpop-nonce"):
        assert {r.wire for r in run.RUNS if r.scenario == scenario} == {
            "2025-11-25", "2026-07-28"}
        assert scenario in run.REQUIRED


@pytest.mark.node
@live
@pytest.mark.parametrize("broken, failure", [
    ("dpop-bearer", "FAILURE sep-1932-client-dpop-auth-scheme"),
    ("dpop-nonce", "the client exited with code 2"),
])
def test_runner_fails_a_broken_dpop_client(broken: str, failure: str) -> None:
    code, lines = run_runner("--only", "auth/dpop-nonce", broken=broken)
    text = "\n".join(lines)
    assert verdicts(lines) == ["FAIL auth/dpop-nonce"] * 2, text
    assert failure in text
    assert code == 1
