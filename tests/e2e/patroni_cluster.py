"""A throwaway Patroni cluster for tests: one etcd member and two PostgreSQL 15 nodes on loopback
ports and temporary directories, configured from deploy/patroni/patroni.yml.in — the file an
operator fills — with the timings shortened for a test."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.e2e.processes import free_port

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "patroni" / "patroni.yml.in"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "cardhub-test"
# Patroni's timings, in seconds (its defaults are 30, 10, 10). loop_wait 1: a node looks at its
# PostgreSQL and at etcd every second, so a dead postmaster is seen within a second. ttl 10: how
# long the leader key outlives a Patroni that stopped renewing it (a lost machine); it must exceed
# loop_wait + 2 × retry_timeout. retry_timeout 4: how long etcd or PostgreSQL may fail to answer
# before the primary demotes itself. This test's primary keeps its Patroni and crashes only its
# PostgreSQL, so the leader key is released at once (primary_start_timeout: 0), not after the ttl.
TIMINGS = {"TTL": "10", "LOOP_WAIT": "1", "RETRY_TIMEOUT": "4"}


def ensure_installed() -> None:
    """Installs patroni, etcd-server and postgresql-15 when missing (as root); skips with the
    reason when they cannot be had — and fails instead when CI is set."""
    missing = _missing()
    if missing and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)
        missing = _missing()
    if missing:
        reason = f"the Patroni failover test needs the Debian packages {' '.join(missing)}, which could not be installed"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: not skipping)")
        pytest.skip(reason)


def _missing() -> list[str]:
    missing = [package for command, package in (("patroni", "patroni"), ("etcd", "etcd-server")) if not shutil.which(command)]
    return missing + ([] if (PG_BIN / "postgres").exists() else ["postgresql-15"])


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def is_(self, endpoint: str) -> bool:
        """Patroni's health endpoints: ``primary`` (the leader) and ``sync`` (the synchronous standby) answer 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/{endpoint}", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def status(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/patroni", timeout=1) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503 still carries the node's status
            return json.loads(exc.read())

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.pg_port}/{dbname}"


@dataclass
class Cluster:
    root: Path
    etcd_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    etcd: subprocess.Popen[bytes] | None = None
    user: str | None = None  # PostgreSQL refuses to run as root: the nodes run as this user then

    @classmethod
    def create(cls) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix="cardhub-patroni-"))
        root.chmod(0o755)
        cluster = cls(root, user="postgres" if os.geteuid() == 0 else None)
        cluster.nodes = [Node(f"node{i}", free_port(), free_port(), root / f"node{i}") for i in (1, 2)]
        return cluster

    def url(self, dbname: str) -> str:
        """The hub's URL: both nodes, and only the one that takes writes will do."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql://postgres:{PASSWORD}@{hosts}/{dbname}?target_session_attrs=read-write"

    def start(self, timeout_s: float = 90) -> Node:
        """Starts etcd and both nodes; returns the primary once the other is its synchronous standby."""
        self._start_etcd()
        for node in self.nodes:
            self._start_node(node)
        deadline = time.monotonic() + timeout_s
        while not (primaries := [n for n in self.nodes if n.is_("primary")]) or not any(n.is_("sync") for n in self.nodes):
            for node in self.nodes:
                assert node.proc is not None and node.proc.poll() is None, self.log(node)
            assert time.monotonic() < deadline, "no primary with a synchronous standby: " + " ".join(map(self.log, self.nodes))
            time.sleep(0.2)
        return primaries[0]

    def _start_etcd(self) -> None:
        peer = free_port()
        data = self.root / "etcd"
        with (self.root / "etcd.log").open("ab") as log:
            self.etcd = subprocess.Popen([
                "etcd", "--name", "e1", "--data-dir", str(data),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"e1=http://127.0.0.1:{peer}", "--listen-metrics-urls", "",
            ], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            assert self.etcd.poll() is None and time.monotonic() < deadline, (self.root / "etcd.log").read_text()
            time.sleep(0.1)

    def _start_node(self, node: Node) -> None:
        node.home.mkdir(mode=0o700)
        values = {
            **TIMINGS, "SCOPE": "cardhub-test", "NODE_NAME": node.name,
            "RESTAPI_LISTEN": f"127.0.0.1:{node.api_port}", "RESTAPI_CONNECT": f"127.0.0.1:{node.api_port}",
            "ETCD_HOSTS": f"127.0.0.1:{self.etcd_port}",
            "PG_LISTEN": f"127.0.0.1:{node.pg_port}", "PG_CONNECT": f"127.0.0.1:{node.pg_port}",
            "PG_DATA_DIR": str(node.data_dir), "PG_BIN_DIR": str(PG_BIN), "PG_PGPASS": str(node.home / "pgpass"),
            "PG_SOCKET_DIR": str(node.home), "CLIENT_NETWORK": "127.0.0.1/32",
            "SUPERUSER_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD, "REWIND_PASSWORD": PASSWORD,
        }
        config = node.home / "patroni.yml"
        config.write_text(string.Template(TEMPLATE.read_text()).substitute(values))
        user = pwd.getpwnam(self.user) if self.user else None
        if user is not None:
            for path in (node.home, config):
                os.chown(path, user.pw_uid, user.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(node.home), "LANG": "C.UTF-8"}
        with (self.root / f"{node.name}.log").open("ab") as log:
            node.proc = subprocess.Popen(
                ["patroni", str(config)], env=env, cwd=node.home, stdout=log, stderr=log, start_new_session=True,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None, extra_groups=[] if user else None,
            )

    def log(self, node: Node) -> str:
        path = self.root / f"{node.name}.log"
        return f"\n--- {node.name} ---\n" + (path.read_text()[-4000:] if path.exists() else "(no log)")

    def create_database(self, primary: Node, dbname: str) -> None:
        with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')

    def stop(self) -> None:
        """Stops what this cluster started: Patroni stops its PostgreSQL on SIGTERM; whatever still
        runs after that (of these processes, or naming this cluster's directory) is killed."""
        started = [p for p in (*(n.proc for n in self.nodes), self.etcd) if p is not None]
        family = []
        for proc in started:
            try:
                family += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for process in [*family, *_naming(self.root)]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _naming(root: Path) -> list[psutil.Process]:
    """Processes whose command line names ``root``: a postmaster a killed Patroni left behind."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(root) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found
