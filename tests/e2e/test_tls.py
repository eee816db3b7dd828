"""``cardhub serve --tls-cert --tls-key`` (DESIGN §13): HTTPS with a certificate made here, the
token and the answers travelling encrypted, and a bad certificate refused in one line."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.config import Settings
from hub.service.token_office import issue_from_data_dir
from tests.e2e.processes import free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def self_signed(directory: Path, name: str = "cardhub.test") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and ``name``, valid for a day, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_the_hub_serves_https_with_a_self_signed_certificate(run_dir: Path) -> None:  # noqa: F811
    cert, key = self_signed(run_dir)
    data_dir, log, port = run_dir / "hub", run_dir / "hub.log", free_port()
    proc = start(["serve", "--port", str(port), "--data-dir", str(data_dir), "--tls-cert", str(cert),
                  "--tls-key", str(key)], log)
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        await ready(url, proc, log, ssl=trusted)
        assert f"listening on https://127.0.0.1:{port}" in log.read_text()
        token = issue_from_data_dir(Settings(data_dir=data_dir), "admin")
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(url + "/v1/merchants", ssl=trusted, headers=headers,
                                    json={"merchant_id": "m1", "name": "Canteen", "category": "dining"}) as resp:
                assert resp.status == 201, await resp.text()
            # a client that does not trust the certificate is refused by its own TLS check …
            try:
                async with session.get(url + "/healthz") as resp:
                    raise AssertionError(f"an untrusted certificate was accepted: {resp.status}")
            except aiohttp.ClientConnectorCertificateError:
                pass
            # … and plain HTTP to the TLS port gets no answer.
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    raise AssertionError(f"plain HTTP was answered: {resp.status}")
            except aiohttp.ClientError:
                pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()


def test_a_bad_certificate_is_one_line_and_exit_2(run_dir: Path) -> None:  # noqa: F811
    cert, key = self_signed(run_dir)
    (run_dir / "other").mkdir()
    _, other_key = self_signed(run_dir / "other")

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "serve", "--port", str(free_port()), "--data-dir", str(run_dir / "hub"), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    for args, says in (
        (["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(run_dir / "missing.pem"), "--tls-key", str(key)], "no such file"),
        (["--tls-cert", str(key), "--tls-key", str(key)], "cannot use"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], "cannot use"),
    ):
        result = serve(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and says in result.stderr, (args, result.stderr)
        assert not (run_dir / "hub" / "pg").exists()  # refused before PostgreSQL started
