"""The direction of imports (STYLE.md), enforced by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "projections", "hub", "device_sim")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}  # ahead of the editable install's finder
    return subprocess.run([str(lint), str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, check=False)


def test_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("hub/storage/writeback.py", "from hub.service import keys", "hub.storage is not allowed to import hub.service"),
    ("hub/audit/verify.py", "from hub.runner import projector", "hub.audit is not allowed to import hub.runner"),
    ("hub/service/app.py", "import device_sim.device", "Illegal imports of protected package device_sim"),
    ("projections/base.py", "import device_sim.device", "Illegal imports of protected package device_sim"),
    ("projections/queries.py", "import asyncpg", "projections is not allowed to import asyncpg"),
    ("hub/service/routes/stats.py", "from hub.service.routes import reads",
     "hub.service.routes.stats is not allowed to import hub.service.routes.reads"),
    ("hub/stray.py", '"""A module in no room."""', "The following modules are not listed as layers"),
])
def test_import_contracts_fail_when_broken(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """The contracts are not vacuous: one forbidden import (or a module outside every room)
    in a copy of the tree breaks them."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout, result.stdout
    assert broken in result.stdout, result.stdout
