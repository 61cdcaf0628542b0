"""SMSGW_ environment variables as an operator meets them: a bad value names
the variable and the key it was read as; a variable that is no config key (a
deploy script's own) is logged and ignored; a typo inside a section is an
error that suggests the key meant."""

from __future__ import annotations

import logging

import pytest

from gateway.core.config import DEFAULT_CONFIG, ConfigError, load_settings


def test_a_bad_value_names_the_variable_and_the_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_HTTP__PORT": "99999"})
    [line] = err.value.errors
    assert line.startswith("SMSGW_HTTP__PORT → http.port: "), line
    assert "65535" in line


def test_a_bad_value_deep_in_a_named_table_names_its_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_CONNECTORS__SIM__WINDOW": "lots"})
    assert err.value.errors[0].startswith("SMSGW_CONNECTORS__SIM__WINDOW → connectors.sim.window:")


@pytest.mark.parametrize("name", ["SMSGW_REPO", "SMSGW_DIR", "SMSGW_DEPLOY__TARGET", "SMSGW_HTTP",
                                  "SMSGW_HTTP__", "SMSGW___X"])
def test_a_variable_that_names_no_config_key_is_logged_and_ignored(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="smsgw.config"):
        settings = load_settings(DEFAULT_CONFIG, environ={name: "/srv/smsgw",
                                                          "SMSGW_HTTP__PORT": "9001"})
    assert settings.http.port == 9001  # the real override still applies
    [record] = [r for r in caplog.records if r.name == "smsgw.config"]
    assert name in record.getMessage() and "ignoring" in record.getMessage()


def test_a_typo_inside_a_known_section_is_an_error_with_a_did_you_mean() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_HTTP__PROT": "9001"})
    [line] = err.value.errors
    assert line.startswith("SMSGW_HTTP__PROT → http.prot: "), line
    assert "did you mean http.port?" in line


def test_a_typo_in_an_account_key_suggests_the_account_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(DEFAULT_CONFIG, environ={"SMSGW_ACCOUNTS__DEMO__CALLBACK_URLL": "x"})
    assert "did you mean accounts.demo.callback_url?" in err.value.errors[0]


def test_top_level_keys_still_apply() -> None:
    settings = load_settings(DEFAULT_CONFIG, environ={"SMSGW_DATA_DIR": "/data"})
    assert settings.data_dir == "/data"
