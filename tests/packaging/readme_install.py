"""tox -e install: the README's install commands, taken from its text and run verbatim in
fresh venvs of the stock interpreters, online, from a copy of the clone's root.

1. The README's first command (venv, pip upgrade on old Pythons, ``pip install .``, the
   demo) with Python 3.6, 3.7 and 3.11. The only substitutions: ``python3`` becomes that
   interpreter and ``/tmp/mcpauth-demo`` a fresh directory. The demo must pass, run the
   installed copy (not the source tree it starts from) and write nothing of its own to
   stderr (cron mails stderr: no ``mcpauth: warning:``, e.g. for cryptography's
   deprecation of Python 3.6 and 3.7).
2. The "without cryptography" commands, with Python 3.6 (after the README's pip upgrade
   command) and 3.11: requests and its dependencies installed, cryptography absent, the
   demo's secret-only flows pass, later pip runs do not complain, ``pip check`` names only
   cryptography.
3. ``pip install mcpauth-client`` with Python 3.11.

The distribution is not taken from the package index (this checkout may be unreleased):
``PIP_FIND_LINKS`` offers pip the wheel built from this checkout, so the commands run
exactly as written. Each command's wall time is printed.

Usage: python readme_install.py WORKDIR [PYTHON_VERSION ...]   (default 3.6 3.7 3.11)
"""

import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_VENV = "/tmp/mcpauth-demo"
DISTRIBUTION = "mcpauth-client"
UPGRADE_PIP = "python -m pip install -q \"pip>=21.3.1,<22; python_version<'3.8'\""
NO_CRYPTOGRAPHY = "pip install requests && pip install --no-deps " + DISTRIBUTION
_SKIP = (".git", ".tox", "build", "dist", "node_modules", "__pycache__", ".hypothesis",
         ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", ".ci-venv")


def readme_commands():
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as fh:
        return [line.strip()[2:] for line in fh if line.strip().startswith("$ ")]


def interpreter(version):
    """The stock interpreter for ``version``: on PATH, else pyenv's newest X.Y.z."""
    found = shutil.which("python" + version)
    if found is not None:
        proc = subprocess.run([found, "-c", "import sys; print(sys.executable)"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True)
        if proc.returncode == 0:
            return proc.stdout.strip()
    if shutil.which("pyenv") is not None:  # a shim outside PYENV_VERSION
        installed = subprocess.check_output(["pyenv", "versions", "--bare"],
                                            universal_newlines=True).split()
        matching = [v for v in installed if re.match(re.escape(version) + r"\.\d+$", v)]
        if matching:
            matching.sort(key=lambda v: [int(part) for part in v.split(".")])
            prefix = subprocess.check_output(["pyenv", "prefix", matching[-1]],
                                             universal_newlines=True).strip()
            return os.path.join(prefix, "bin", "python" + version)
    raise SystemExit("install: no python{} on PATH or in pyenv".format(version))


def clone_copy(workdir):
    """The checkout without build products: ``pip install .`` writes into it."""
    target = os.path.join(workdir, "clone")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ROOT, target, ignore=lambda d, names: [
        n for n in names if n in _SKIP or n.endswith(".egg-info") or n.startswith(".venv")])
    return target


def run(command, cwd, env, label):
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    elapsed = time.monotonic() - started
    print("install: {:<48} {:6.1f} s  exit {}".format(label, elapsed, proc.returncode),
          flush=True)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr)
        raise SystemExit("install: {} failed".format(label))
    return proc.stdout, proc.stderr


def check(condition, label, what, out="", err=""):
    if not condition:
        print(out + err)
        raise SystemExit("install: {}: {}".format(label, what))


def own_stderr(err):
    """Lines that mcpauth wrote to stderr (pip's own notices are not ours)."""
    return [line for line in err.splitlines() if line.startswith("mcpauth")]


def first_command(command, version, clone, workdir, env):
    label = "first command, Python " + version
    venv = os.path.join(workdir, "demo-" + version)
    shutil.rmtree(venv, ignore_errors=True)
    assert command.startswith("python3 -m venv " + DEMO_VENV + " "), command
    line = interpreter(version) + command[len("python3"):]
    out, err = run(line.replace(DEMO_VENV, venv), clone, env, label)
    check(re.search(r"^demo: all \d+ flows passed", out, re.M), label, "the demo failed",
          out, err)
    check(own_stderr(err) == [], label, "mcpauth wrote to stderr", out, err)
    where = re.search(r"^   mcpauth \S+\s+(\S+)$", out, re.M)
    check(where and where.group(1).startswith(venv + "/lib/"), label,
          "the demo did not run the installed package", out, err)


def no_cryptography(version, clone, workdir, env):
    label = "without cryptography, Python " + version
    venv = os.path.join(workdir, "nocrypto-" + version)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.check_call([interpreter(version), "-m", "venv", venv])
    env = dict(env, PATH=os.path.join(venv, "bin") + os.pathsep + env["PATH"])
    run(UPGRADE_PIP, workdir, env, "  pip upgrade, Python " + version)
    out, err = run(NO_CRYPTOGRAPHY, workdir, env, label)
    check("requires" not in out + err and "ERROR" not in out + err, label,
          "pip complained", out, err)
    python = os.path.join(venv, "bin", "python")
    probe = ("import importlib.util as u, sys; import requests, urllib3, idna, certifi; "
             "import mcpauth; sys.exit(u.find_spec('cryptography') is not None)")
    run("{} -c \"{}\"".format(python, probe), workdir, env, "  imports, Python " + version)
    out, err = run(os.path.join(venv, "bin", "mcpauth") + " demo", workdir, env,
                   "  demo, Python " + version)
    check("skipped" in out and "passed" in out, label, "the demo did not skip signing",
          out, err)
    check(own_stderr(err) == [], label, "mcpauth wrote to stderr", out, err)
    out, err = run("pip install requests", workdir, env, "  a later pip run, Python " + version)
    check("requires" not in out + err and "not installed" not in out + err, label,
          "a later pip run complained", out, err)
    proc = subprocess.run([python, "-m", "pip", "check"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, env=env)
    problems = [line for line in proc.stdout.splitlines() if line.strip()]
    check(len(problems) == 1 and re.match(
        r"mcpauth-client \S+ requires cryptography, which is not installed", problems[0]),
        label, "pip check: {}".format(problems))


def plain_install(command, version, workdir, env):
    label = "'{}', Python {}".format(command, version)
    venv = os.path.join(workdir, "plain-" + version)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.check_call([interpreter(version), "-m", "venv", venv])
    env = dict(env, PATH=os.path.join(venv, "bin") + os.pathsep + env["PATH"])
    run(command, workdir, env, label)
    out, err = run("mcpauth demo", workdir, env, "  demo, Python " + version)
    check(own_stderr(err) == [], label, "mcpauth wrote to stderr", out, err)


def main(argv):
    workdir = os.path.abspath(argv[1])
    versions = argv[2:] or ["3.6", "3.7", "3.11"]
    os.makedirs(workdir, exist_ok=True)
    commands = readme_commands()
    clone = clone_copy(workdir)
    wheels = os.path.join(workdir, "wheels")
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.check_call([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "-w", wheels, clone])
    shutil.rmtree(clone)
    clone = clone_copy(workdir)
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    env["PIP_FIND_LINKS"] = " ".join(filter(None, [wheels, env.get("PIP_FIND_LINKS")]))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Never the tox env's own bin directory: the commands name their own pip and python.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(os.path.dirname(sys.executable)))

    check(UPGRADE_PIP in commands, "README", "the pip upgrade command is gone")
    check(NO_CRYPTOGRAPHY in commands, "README", "the no-cryptography command is gone")
    plain = "pip install " + DISTRIBUTION
    check(plain in commands, "README", "'{}' is gone".format(plain))
    for version in versions:
        first_command(commands[0], version, clone, workdir, env)
    for version in [v for v in versions if v in ("3.6", "3.11")] or versions[:1]:
        no_cryptography(version, clone, workdir, env)
    plain_install(plain, versions[-1], workdir, env)
    print("install: the README's install commands work as written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
