"""Run the tests on any machine, fresh or not: ``python scripts/test.py [pytest arguments]``.

This is the README's test command and what CI runs (.ci/run). It brings what the tests need,
then runs them:

1. the pinned Python packages of requirements-dev.txt (the app's, plus pytest, Playwright and
   ruff; pip does nothing when they are there already);
2. Debian's Chromium for the browser tests, with apt-get when /usr/bin/chromium is missing
   (as root, or through sudo; Playwright drives this browser and never downloads its own);
3. ``ruff check`` with the project's configuration (pyproject.toml);
4. ``python -m pytest -q tests`` with any arguments given here.

``--no-install`` skips steps 1 and 2 (an offline machine that has everything). The exit status
is the first failing step's; pytest collecting no test at all (its status 5) is a failure too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def run(*cmd: str) -> int:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def install_python_packages() -> int:
    return run(sys.executable, "-m", "pip", "install", "--progress-bar", "off", "-r", "requirements-dev.txt")


def install_chromium() -> int:
    """Debian's chromium package, unless it is there; a plain message where it cannot be done."""
    if CHROMIUM.exists():
        return 0
    if shutil.which("apt-get") is None:
        print(f"The browser tests need Chromium at {CHROMIUM} (Debian's chromium package), and this "
              "machine has no apt-get: install Chromium there, then run this again.", file=sys.stderr)  # fmt: skip
        return 1
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        print("Installing Chromium needs root: run 'apt-get install -y chromium' as root, then this again.",
              file=sys.stderr)  # fmt: skip
        return 1
    env_prefix = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive"]
    status = run(*env_prefix, "apt-get", "update")
    return status or run(*env_prefix, "apt-get", "install", "-y", "--no-install-recommends", "chromium")


def main(argv: list[str]) -> int:
    install = "--no-install" not in argv
    pytest_args = [a for a in argv if a != "--no-install"]
    if install:
        status = install_python_packages() or install_chromium()
        if status:
            return status
    status = run(sys.executable, "-m", "ruff", "check", ".")
    if status:
        print("ruff check found problems (listed above).", file=sys.stderr)
        return status
    status = run(sys.executable, "-m", "pytest", "-q", "tests", *pytest_args)
    if status == 5:
        print("pytest collected no tests: that is a failure, never a pass.", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
