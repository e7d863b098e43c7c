"""Shared timing harness of the benchmark scripts (not tests; nothing here asserts).

Every figure is measured side by side in one process run: the cases of a table are
timed round-robin (one batch of each case per round, so machine noise hits every case
alike), and each case's median batch is reported with its ratio to the table's floor,
a hand-written minimum measured in the same run.
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: ``--smoke``: a few iterations of everything, to keep the scripts working in CI.
SMOKE = "--smoke" in sys.argv


def peer(import_name):
    """Import a peer library if installed (``tox -e bench`` installs them), else None."""
    try:
        module = __import__(import_name)
        for part in import_name.split(".")[1:]:
            module = getattr(module, part)
        return module
    except ImportError:
        return None


def round_robin(cases, number, rounds=15):
    """Median seconds per call of each ``(name, fn)`` in ``cases``, timed round-robin."""
    if SMOKE:
        number, rounds = 1, 1
    samples = {name: [] for name, _ in cases}
    for _, fn in cases:  # warm up
        fn()
    clock = time.perf_counter
    for _ in range(rounds):
        for name, fn in cases:
            start = clock()
            for _ in range(number):
                fn()
            samples[name].append((clock() - start) / number)
    return _summary(samples, cases)


def _summary(samples, cases):
    """Medians, with the minima kept aside (:data:`MINIMA`) for the tables' last column."""
    for name, _ in cases:
        MINIMA[name] = min(samples[name])
    return [(name, statistics.median(samples[name])) for name, _ in cases]


#: The best batch of each case: on a busy shared machine the median carries other
#: processes' load, the minimum is closest to the code's own cost; both are shown.
MINIMA = {}


def round_robin_fresh(cases, make, number, rounds=31):
    """Like :func:`round_robin`, each call on a fresh object from ``make()``, made untimed."""
    if SMOKE:
        number, rounds = 1, 1
    samples = {name: [] for name, _ in cases}
    for _, fn in cases:
        fn(make())
    clock = time.perf_counter
    for _ in range(rounds):
        for name, fn in cases:
            items = [make() for _ in range(number)]
            start = clock()
            for item in items:
                fn(item)
            samples[name].append((clock() - start) / number)
    return _summary(samples, cases)


def table(title, results, floor, unit="us", scale=1e6, note=None):
    """Print ``results`` (name, seconds) with ratios to the row named ``floor``."""
    base = dict(results)[floor]
    print("\n" + title)
    if note:
        print("  " + note)
    print("  %-62s %10s %7s %9s" % ("", unit + " (med)", "ratio", "min ratio"))
    for name, value in results:
        best = ("%8.2fx" % (MINIMA[name] / MINIMA[floor])
                if name in MINIMA and floor in MINIMA else "")
        print("  %-62s %10.2f %6.2fx %s" % (name, value * scale, value / base, best))
    sys.stdout.flush()
    return {name: value / base for name, value in results}


def versions():
    import requests

    parts = ["Python %s" % sys.version.split()[0], "requests %s" % requests.__version__]
    for dist in ("cryptography", "authlib", "requests_oauthlib", "google.auth", "msal", "jwt",
                 "mcp"):
        module = peer(dist)
        version = getattr(module, "__version__", None) if module else None
        if version is None and module is not None:
            try:
                from importlib import metadata
                version = metadata.version({"google.auth": "google-auth", "jwt": "PyJWT",
                                            "requests_oauthlib": "requests-oauthlib"}
                                           .get(dist, dist))
            except Exception:
                version = "?"
        parts.append("%s %s" % (dist, version if module else "(not installed)"))
    return ", ".join(parts)
