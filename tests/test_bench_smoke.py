"""Smoke pass of the benchmark scripts: each runs end to end with one iteration.

Numbers are never checked (benchmarks are not timed tests); this only keeps the
scripts working. Peers are optional: rows for those not installed are left out.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("cryptography")

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench")
# The scripts that time mcpauth against the peers (each takes --smoke).
SCRIPTS = ["bench_attach.py", "bench_cron.py", "bench_flows.py", "bench_import.py",
           "bench_sign.py"]


def test_every_script_is_smoked():
    assert set(SCRIPTS) <= set(os.listdir(BENCH))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_runs(script):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--smoke"],
                          cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "ratio" in proc.stdout or "token request" in proc.stdout
