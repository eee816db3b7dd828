"""deploy/ stays true to the hub: the alert rules name only metrics a hub serves and promtool
accepts them; the systemd unit passes ``systemd-analyze verify`` and stops the hub with SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import Hub

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "cardhub-alerts.yml"
UNIT = DEPLOY / "systemd" / "cardhub.service"
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself


def _tool(name: str, package: str) -> str:
    """The tool's path; CI fails without it (.ci/run installs the package), elsewhere the test skips."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not installed: CI must check deploy/ (apt-get install {package})")
        pytest.skip(f"{name} not installed: apt-get install {package}")
    return path


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


async def test_every_metric_an_alert_names_is_one_the_hub_serves(hub: Hub) -> None:
    await hub.merchant()
    device = await hub.pos()
    await hub.account("S1", cash=1000, card="04A1B2C3D4")
    device.purchase("04A1B2C3D4", 100, datetime.now(UTC))
    await hub.send(device)
    await hub.settle()
    resp = await hub.client.get("/metrics")
    assert resp.status == 200
    served = {line.split("{")[0].split(" ")[0] for line in (await resp.text()).splitlines() if line and line[0] != "#"}
    named = {name for rule in _rules() for name in re.findall(r"\b[a-z_]+(?=[{\s)=<>!]|\[|$)", rule["expr"])
             if name.startswith("cardhub_") or name in PROMETHEUS_OWN}
    assert {n for n in named if n.startswith("cardhub_")}, named
    missing = sorted(n for n in named - PROMETHEUS_OWN if n not in served)
    assert not missing, f"alert rules name metrics the hub does not serve: {missing}"
    assert {r["alert"] for r in _rules()} >= {
        "CardhubStoreUnreachable", "CardhubDegraded", "CardhubProjectionLag", "CardhubShedding", "CardhubCheckpointStale",
        "CardhubNoActiveHub",
    }


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([_tool("promtool", "prometheus"), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_the_systemd_unit_verifies_and_stops_the_hub_with_sigterm(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "KillSignal=SIGTERM" in text and "Restart=on-failure" in text
    # verify checks that ExecStart's program exists and the user is known: point them at this machine's.
    local = tmp_path / "cardhub.service"
    local.write_text(text.replace("/opt/cardhub/.venv/bin/cardhub", str(Path(sys.executable).parent / "cardhub"))
                     .replace("User=cardhub", "User=root").replace("Group=cardhub", "Group=root"))
    result = subprocess.run([_tool("systemd-analyze", "systemd"), "verify", str(local)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
