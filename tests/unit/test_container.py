"""The container as shipped (the image is not built here: no Docker daemon on
the test machine): non-root, health-checked, production config by default,
ports published on loopback only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.core.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck_on_healthz() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert "SMSGW_CONFIG=/app/config/production.toml" in text


def test_the_production_config_has_no_demo_account_key_or_simulator(tmp_path: Path) -> None:
    settings = load_settings(ROOT / "config" / "production.toml",
                             environ={"SMSGW_DATA_DIR": str(tmp_path)})
    assert "demo" not in settings.accounts
    assert not settings.simulator.enabled
    assert all("demo-key" not in a.api_keys for a in settings.accounts.values())
    assert all(not a.callback_allow for a in settings.accounts.values())


def test_compose_publishes_every_port_on_loopback_and_the_demo_is_opt_in() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert services["demo"]["profiles"] == ["demo"]
    assert "profiles" not in services["gateway"]
