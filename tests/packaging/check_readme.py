"""tox -e readme: README.rst renders for PyPI, and every example in it runs.

1. ``twine check`` on a freshly built wheel (PyPI's renderer, readme_renderer).
2. Every ``>>>`` example runs as a doctest (ELLIPSIS, NORMALIZE_WHITESPACE); at least one
   example must run, so an emptied README fails.
"""

import doctest
import glob
import os
import subprocess
import sys
import tempfile


def main() -> int:
    readme = os.path.abspath(sys.argv[1])
    root = os.path.dirname(readme)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                               "-w", tmp, root])
        subprocess.check_call([sys.executable, "-m", "twine", "check", "--strict"]
                              + glob.glob(os.path.join(tmp, "*.whl")))
        # Run the examples from an empty directory so relative paths cannot help them.
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            result = doctest.testfile(
                readme, module_relative=False,
                optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        finally:
            os.chdir(cwd)
    print("README examples: {} attempted, {} failed".format(result.attempted, result.failed))
    if result.attempted == 0 or result.failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
