"""TLS on the links an attacker on the network could read or change, with
certificates the test makes (trustme): the HTTP API served over HTTPS only."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from gateway.config import DEFAULT_CONFIG, ConfigError, load_settings
from loadtest.harness import GatewayProcess
from tests.integration.conftest import AUTH


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_the_api_listens_with_https_and_a_client_trusting_the_ca_submits(
    tmp_path: Path, ca: trustme.CA
) -> None:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
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
