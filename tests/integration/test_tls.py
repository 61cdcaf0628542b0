"""TLS on the links an attacker on the network could read or change, with
certificates the test makes (trustme): the HTTP API served over HTTPS only,
and SMPP to an upstream SMSC (the simulator serving TLS) with the certificate
verified."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from gateway.config import DEFAULT_CONFIG, ConfigError, load_settings
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
