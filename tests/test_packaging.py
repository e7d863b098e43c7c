"""Packaging checks: metadata in setup.cfg, the setup.py shim, MANIFEST.in, the public
API, vendorability (relative imports only) and the lazy ``cryptography`` import.

The metadata layout follows PyJWT 2.9.0's setup.cfg.
"""

import ast
import configparser
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mcpauth
from mcpauth import errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mcpauth"
DISTRIBUTION = "mcpauth-client"


def _setup_cfg():
    parser = configparser.ConfigParser(interpolation=None)
    with open(str(ROOT / "setup.cfg"), encoding="utf-8") as f:
        parser.read_file(f)
    return parser


def _lines(value):
    return [line.strip() for line in value.splitlines() if line.strip()]


def _package_modules():
    """(dotted name, path) of every module in the package, subpackages included."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


_TREES = {}  # type: dict


def _tree(path):
    if path not in _TREES:
        _TREES[path] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return _TREES[path]


def _run(args, **kwargs):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONSTARTUP", None)
    proc = subprocess.Popen([sys.executable] + args, cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, **kwargs)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# ---------------------------------------------------------------- version


def test_setup_cfg_version_is_the_package_version():
    version = _setup_cfg().get("metadata", "version")
    assert not version.startswith(("attr:", "file:")), "a literal, so old setuptools need no import"
    assert version == _literal_version() == mcpauth.__version__
    assert re.match(r"^\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$", version)


def _literal_version():
    """The ``__version__ = "..."`` literal of mcpauth/__init__.py, read without importing
    it (as release tooling reads it); one module less for ``import mcpauth`` to load."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    found = [node.value for node in tree.body if isinstance(node, ast.Assign)
             and [getattr(t, "id", None) for t in node.targets] == ["__version__"]]
    assert len(found) == 1
    version = ast.literal_eval(found[0])
    assert isinstance(version, str)
    return version


def test_python_m_mcpauth_version():
    code, out, err = _run(["-m", "mcpauth", "--version"])
    assert code == 0, err
    assert out.strip() == "mcpauth " + mcpauth.__version__


def test_setup_py_reads_the_metadata_from_setup_cfg():
    code, out, err = _run(["setup.py", "-q", "--version"])
    if code != 0 and "No module named 'setuptools'" in err:
        pytest.skip("setuptools is not installed for this interpreter")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == _literal_version()


# ---------------------------------------------------------------- public API


def test_public_names_exist_once():
    assert len(mcpauth.__all__) == len(set(mcpauth.__all__))
    for name in mcpauth.__all__:
        assert hasattr(mcpauth, name), name


def test_every_error_is_exported_from_the_package():
    for name in errors.__all__:
        assert name in mcpauth.__all__, name
        assert getattr(mcpauth, name) is getattr(errors, name)


def test_all_is_sorted_within_each_commented_group():
    source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    block = re.search(r"^__all__ = \[\n(.*?)^\]", source, re.S | re.M)
    assert block, "__all__ is a literal list in mcpauth/__init__.py"
    groups = [[]]  # type: list
    for line in block.group(1).splitlines():
        line = line.strip()
        if line.startswith("#"):
            groups.append([])
        elif line:
            groups[-1].extend(ast.literal_eval("[" + line + "]"))
    assert sum(groups, []) == list(mcpauth.__all__)
    for group in groups:
        assert group == sorted(group), group


def test_console_script_target_exists():
    scripts = _lines(_setup_cfg().get("options.entry_points", "console_scripts"))
    assert scripts == ["mcpauth = mcpauth.cli:main"]
    from mcpauth import cli

    assert callable(cli.main)


# ---------------------------------------------------------------- vendorable


def _absolute_mcpauth_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mcpauth" or alias.name.startswith("mcpauth."):
                    yield node.lineno, "import " + alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mcpauth" or node.module.startswith("mcpauth."):
                yield node.lineno, "from " + node.module


def test_package_uses_only_relative_imports_of_itself():
    modules = _package_modules()
    assert len(modules) >= 7
    bad = []
    for name, path in modules:
        tree = _tree(path)
        bad.extend("{}:{}: {}".format(name, line, text)
                   for line, text in _absolute_mcpauth_imports(tree))
    assert bad == []


def test_the_absolute_import_scan_finds_absolute_imports():
    tree = ast.parse("import mcpauth.errors\nfrom mcpauth import x\nfrom . import y\n"
                     "def f():\n    from mcpauth.jws import z\n")
    assert [line for line, _ in _absolute_mcpauth_imports(tree)] == [1, 2, 5]


def _module_level_imports(tree):
    """Imports that run at import time: everything outside function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        stack.extend(ast.iter_child_nodes(node))


def test_cryptography_is_never_imported_at_module_level():
    bad = []
    for name, path in _package_modules():
        tree = _tree(path)
        bad.extend("{}:{}: {}".format(name, line, module)
                   for line, module in _module_level_imports(tree)
                   if module == "cryptography" or module.startswith("cryptography."))
    assert bad == []


_IMPORT_ALL = """
import importlib, json, sys
names = json.loads(sys.argv[1])
import mcpauth
after_package = sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")
for name in names:
    importlib.import_module(name)
after_all = sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")
print(json.dumps({"file": mcpauth.__file__, "package": after_package, "all": after_all}))
"""

_BLOCK_CRYPTOGRAPHY = """
import sys
class _Blocker(object):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "cryptography":
            raise ImportError("No module named " + repr(name) + " (blocked by the test)")
        return None
    def find_module(self, name, path=None):
        self.find_spec(name, path)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def test_import_mcpauth_does_not_import_cryptography():
    names = [name for name, _ in _package_modules()]
    code, out, err = _run(["-c", _IMPORT_ALL, json.dumps(names)])
    assert code == 0, err
    result = json.loads(out)
    assert Path(result["file"]).resolve() == (PACKAGE / "__init__.py").resolve()
    assert result["package"] == []
    assert result["all"] == []


def test_mcpauth_imports_without_cryptography_installed():
    names = [name for name, _ in _package_modules()]
    check = ("\nfrom mcpauth import _compat, MissingDependencyError\n"
             "try:\n    _compat.require_cryptography()\n"
             "except MissingDependencyError as exc:\n"
             "    assert exc.package == 'cryptography' and isinstance(exc, ImportError)\n"
             "    assert 'pip install' in str(exc)\n"
             "    print('MISSING-OK')\n")
    code, out, err = _run(["-c", _BLOCK_CRYPTOGRAPHY + _IMPORT_ALL + check, json.dumps(names)])
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "MISSING-OK"


def test_the_blocker_really_blocks():
    code, out, err = _run(["-c", _BLOCK_CRYPTOGRAPHY + "import cryptography"])
    assert code != 0
    assert "blocked by the test" in err


# ---------------------------------------------------------------- import cost

# What `import mcpauth` must not load: DPoP (RFC 9449) and JWS are imported when a provider
# is given dpop_key= or loads a key, discovery (RFC 9728, RFC 8414) when a provider first
# needs it, the file store when a FileTokenCache is made, and the rest of the package
# (PEP 562) when its names are first used.
_NOT_AT_IMPORT = ["mcpauth.dpop", "mcpauth.jws", "mcpauth.discovery", "mcpauth.filecache",
                  "mcpauth.crossapp",
                  "mcpauth.workload", "mcpauth.client", "mcpauth.rediscache", "mcpauth.cli",
                  "mcpauth.testing", "cryptography"]

_LOADED = """
import json, sys
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"
                  or m.split(".")[0] == "mcpauth" and m.count(".") == 1)
"""


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="Python 3.6 has no module __getattr__: the package imports all")
@pytest.mark.parametrize("statement", ["import mcpauth",
                                       "from mcpauth import ClientCredentialsProvider"])
def test_import_loads_only_what_a_provider_needs(statement):
    code, out, err = _run(["-c", _LOADED + statement + "\nprint(json.dumps(loaded()))"])
    assert code == 0, err
    loaded = json.loads(out)
    assert "mcpauth.providers" in loaded
    assert [name for name in _NOT_AT_IMPORT if name in loaded] == []


@pytest.mark.parametrize("where", ["mcpauth", "mcpauth.cache", "mcpauth.filecache"])
def test_file_token_cache_is_one_class_wherever_it_is_imported_from(where):
    import importlib

    from mcpauth.filecache import FileTokenCache

    assert importlib.import_module(where).FileTokenCache is FileTokenCache
    from mcpauth.cache import FILE_FORMAT, MAX_FILE_BYTES  # noqa: F401 - still importable
    assert not hasattr(importlib.import_module("mcpauth.cache"), "NoSuchThing")


def test_providers_without_dpop_import_neither_dpop_nor_jws_nor_cryptography():
    code, out, err = _run(["-c", _BLOCK_CRYPTOGRAPHY + _LOADED + """
import mcpauth
before = loaded()
mcpauth.ClientCredentialsProvider("client", "a-client-secret", server_url="https://mcp.example/mcp")
mcpauth.BearerTokenProvider("a-bearer-token", server_url="https://mcp.example/mcp")
print(json.dumps([m for m in loaded() if m not in before]))
"""])
    assert code == 0, err
    assert json.loads(out) == []


@pytest.mark.parametrize("construct", [
    'ClientCredentialsProvider("client", "a-client-secret", dpop_key=True, '
    'server_url="https://mcp.example/mcp")',
    'BearerTokenProvider("a-bearer-token", dpop_key={"kty": "EC", "crv": "P-256", "x": "AA", '
    '"y": "AA", "d": "AA"})',
])
def test_dpop_key_without_cryptography_fails_at_construction(construct):
    # The lazy DPoP import must not move the documented error: it is raised by the
    # constructor, as a MissingDependencyError naming the package.
    code, out, err = _run(["-c", _BLOCK_CRYPTOGRAPHY + """
from mcpauth import *
try:
    """ + construct + """
except MissingDependencyError as exc:
    assert exc.package == "cryptography", exc
    print("MISSING-OK")
"""])
    assert code == 0, err
    assert out.strip() == "MISSING-OK"


def test_lazy_pattern_compiles_on_first_use_and_then_matches_as_the_pattern(monkeypatch):
    from mcpauth import _compat

    compiled = []
    real = re.compile
    monkeypatch.setattr(_compat.re, "compile", lambda *a: compiled.append(a) or real(*a))
    lazy = _compat.lazy_pattern(r"a+", re.IGNORECASE)
    assert compiled == []  # nothing compiled yet
    assert lazy.match("AAb").group() == "AA"
    assert lazy.fullmatch("aAb") is None and lazy.sub("-", "baab") == "b-b"
    assert lazy.pattern == "a+" and lazy.flags == real(r"a+", re.IGNORECASE).flags
    assert compiled == [(r"a+", re.IGNORECASE)]  # once


# ---------------------------------------------------------------- setup.py, setup.cfg, MANIFEST.in


def test_setup_py_is_a_three_line_shim_without_metadata():
    source = (ROOT / "setup.py").read_text(encoding="utf-8")
    code_lines = [line for line in source.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    assert len(code_lines) <= 3, code_lines
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert len(calls) == 1
    assert isinstance(calls[0].func, ast.Name) and calls[0].func.id == "setup"
    assert calls[0].args == [] and calls[0].keywords == [], "metadata belongs in setup.cfg"
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [(node.module, [a.name for a in node.names]) for node in imports] == [
        ("setuptools", ["setup"])]


def test_no_pyproject_toml():
    # With one, modern pip builds in an isolated env and fails offline.
    assert not (ROOT / "pyproject.toml").exists()


def test_setup_cfg_requirements():
    cfg = _setup_cfg()
    assert cfg.get("options", "python_requires").strip() == ">=3.6"
    requirements = _lines(cfg.get("options", "install_requires"))
    assert sorted(requirements) == ["cryptography>=2.8", "requests>=2.20.0"]
    for requirement in requirements:
        assert not re.search(r"<|!=|~=|==|\^|;", requirement), requirement
    assert not cfg.has_section("options.extras_require") or all(
        "<" not in value for _, value in cfg.items("options.extras_require"))


def test_setup_cfg_metadata():
    cfg = _setup_cfg()
    # The index's "mcpauth" is another project; the import package stays mcpauth.
    assert cfg.get("metadata", "name") == DISTRIBUTION
    assert cfg.get("metadata", "long_description").strip() == "file: README.rst"
    assert cfg.get("options", "zip_safe").strip() == "False"
    classifiers = _lines(cfg.get("metadata", "classifiers"))
    for minor in range(6, 14):
        assert "Programming Language :: Python :: 3.{}".format(minor) in classifiers
    assert "Typing :: Typed" in classifiers


def test_py_typed_is_shipped():
    assert (PACKAGE / "py.typed").is_file()
    cfg = _setup_cfg()
    assert "py.typed" in cfg.get("options.package_data", "mcpauth").split()
    packages = _lines(cfg.get("options.packages.find", "include"))
    assert "mcpauth" in packages and "mcpauth.*" in packages


def _manifest():
    return [line.split() for line in
            (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_manifest_grafts_tests_and_ships_the_marker_and_licence():
    manifest = _manifest()
    assert ["graft", "tests"] in manifest
    included = [name for words in manifest if words[0] == "include" for name in words[1:]]
    for name in ("LICENSE", "setup.cfg", "setup.py", "mcpauth/py.typed"):
        assert name in included, name
    assert ["global-exclude", "*.py[cod]", "__pycache__"] in manifest
    pruned = [words[1] for words in manifest if words[0] == "prune"]
    assert any(p.endswith("node_modules") for p in pruned)
    for words in manifest:
        # Nothing from the manifest must undo `graft tests`.
        assert not (words[0] in ("prune", "recursive-exclude") and words[1] == "tests")


def test_license_file_is_present_and_declared():
    assert (ROOT / "LICENSE").is_file()
    assert _setup_cfg().get("metadata", "license_files").strip() == "LICENSE"


def test_pytest_runs_with_warnings_as_errors():
    filters = _lines(_setup_cfg().get("tool:pytest", "filterwarnings"))
    assert filters[0] == "error"
    assert "xfail_strict" in dict(_setup_cfg().items("tool:pytest"))


def test_subpackages_are_packages():
    # packages = find: only finds directories with an __init__.py
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        directory = path.parent
        while directory != PACKAGE:
            assert (directory / "__init__.py").is_file(), directory
            directory = directory.parent
    for name, _ in _package_modules():
        assert importlib.util.find_spec(name) is not None, name


def test_ci_runs_the_readme_test_command():
    """The README's second console command is the exact command .ci/run runs."""
    with open(os.path.join(ROOT, "README.rst")) as fh:
        commands = [line.strip()[2:] for line in fh if line.strip().startswith("$ ")]
    assert len(commands) >= 2
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        ci_lines = [line.strip() for line in fh]
    assert commands[1] in ci_lines
    assert "demo" in commands[0] and commands[0].startswith("python3 -m venv")


def _readme_commands():
    with open(os.path.join(ROOT, "README.rst")) as fh:
        return [line.strip()[2:] for line in fh if line.strip().startswith("$ ")]


def test_readme_installs_the_distribution_and_says_why_its_name_differs():
    commands = _readme_commands()
    installs = [c for c in commands if re.match(r"(\S*/)?pip install ", c)]
    assert "pip install " + DISTRIBUTION in installs
    for command in installs:
        # Never the index's other "mcpauth" project.
        assert not re.search(r"(?<![\w.-])mcpauth(?![\w.-])", command), command
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    assert re.search(r"distribution is\s+(named\s+)?``" + DISTRIBUTION, text)
    assert "``import mcpauth``" in text


def test_readme_first_command_upgrades_old_pips_and_runs_the_installed_demo():
    first = _readme_commands()[0]
    # Python 3.6's venv pip (18) cannot install cryptography's current wheels and does not
    # choose versions by Requires-Python on every index; 21.3.1 is the last pip for 3.6.
    assert "\"pip>=21.3.1,<22; python_version<'3.8'\"" in first
    assert first.index("pip>=21.3.1") < first.index("install -q .")
    # The console script, not ``python -m`` from the clone's root, which would import the
    # source tree instead of what was installed.
    assert first.endswith("/tmp/mcpauth-demo/bin/mcpauth demo")


_OUTSIDE_CITATION = re.compile(r"STYLE(\.md)?\s*§|STYLE\.md|style guide\s*§|REQUIREMENTS"
                               r"|REFERENCE\.md|LANDSCAPE\.md|CONFORMANCE\.md|/work/shared")


def test_nothing_shipped_cites_files_outside_the_repository():
    paths = [path for _, path in _package_modules()]
    paths += [ROOT / name for name in ("README.rst", "setup.cfg", "tox.ini", "setup.py")]
    paths.append(ROOT / ".ci" / "run")
    bad = ["{}:{}".format(path.relative_to(ROOT), number)
           for path in paths
           for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
           if _OUTSIDE_CITATION.search(line)]
    assert bad == []
    assert _OUTSIDE_CITATION.search("see STYLE §5") and _OUTSIDE_CITATION.search(
        "(REQUIREMENTS G7)")


def test_tox_bench_runs_every_benchmark():
    parser = configparser.ConfigParser(interpolation=None)
    with open(str(ROOT / "tox.ini"), encoding="utf-8") as f:
        parser.read_file(f)
    commands = _lines(parser.get("testenv:bench", "commands"))
    # The env runs from tests/bench (changedir), so each script is named bare.
    assert parser.get("testenv:bench", "changedir").strip() == "{toxinidir}/tests/bench"
    for bench in sorted((ROOT / "tests" / "bench").glob("bench_*.py")):
        assert "python " + bench.name in commands, bench.name
