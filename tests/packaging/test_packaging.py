"""What the published distribution holds, checked from its configuration (no build: CI's
``make smoke`` builds the wheel, installs it into a fresh venv and runs it)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import streamflow

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
APP = tomllib.loads((ROOT / "consumers" / "pyproject.toml").read_text())


def _data_files() -> list[str]:
    """Files under streamflow/ that are not Python sources, relative to streamflow/."""
    package = ROOT / "streamflow"
    return sorted(str(path.relative_to(package)) for path in package.rglob("*")
                  if path.is_file() and path.suffix not in {".py", ".pyc"}
                  and "__pycache__" not in path.parts)


def test_version_is_written_once_in_the_package() -> None:
    assert "version" in PROJECT["project"]["dynamic"] and "version" not in PROJECT["project"]
    setuptools = PROJECT["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "streamflow.__version__"}
    assert importlib.metadata.version("streamflow") == streamflow.__version__


def test_license_is_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").is_file() and PROJECT["project"]["license-files"] == ["LICENSE"]


def test_every_data_file_of_the_package_matches_a_package_data_pattern() -> None:
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["streamflow"]
    files = _data_files()
    assert "py.typed" in files and any(f.startswith("lua/") for f in files)
    missing = [f for f in files
               if not any(fnmatch.fnmatch(f, p.replace("**/*", "*")) for p in patterns)]
    assert missing == [], f"add them to [tool.setuptools.package-data]: {missing}"


def test_the_distribution_ships_streamflow_alone_with_one_command() -> None:
    assert PROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["streamflow*"]
    assert PROJECT["project"]["scripts"] == {"streamflow": "streamflow.cli:main"}
    assert "razorpay" not in PROJECT["project"]["optional-dependencies"]


def test_the_reference_app_is_its_own_distribution_covering_every_subpackage() -> None:
    packages = {".".join(path.parent.relative_to(ROOT).parts)
                for path in (ROOT / "consumers").rglob("__init__.py")
                if not {"build", "dist"} & set(path.relative_to(ROOT).parts)}
    assert sorted(APP["tool"]["setuptools"]["packages"]) == sorted(packages)
    assert APP["project"]["scripts"] == {"streamflow-razorpay": "consumers.razorpay.cli:main"}
    assert "Private :: Do Not Upload" in APP["project"]["classifiers"]
    # what the app imports at run time is in its own dependencies, not streamflow's
    names = " ".join(APP["project"]["dependencies"])
    for needed in ("httpx", "uvicorn", "starlette", "aiosqlite", "asyncpg"):
        assert needed in names


def test_python_m_streamflow_is_the_console_script() -> None:
    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "stats", "--help"], capture_output=True, text=True,
                              timeout=60, check=False)

    module = run(sys.executable, "-m", "streamflow")
    script = run(str(Path(sys.executable).parent / "streamflow"))
    assert module.returncode == script.returncode == 0
    assert module.stdout.replace("python -m streamflow", "streamflow") == script.stdout
    bad = subprocess.run([sys.executable, "-m", "streamflow", "no-such-command"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
