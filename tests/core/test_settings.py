from pathlib import Path

import pytest

from chainkeeper.core.errors import ConfigError
from chainkeeper.core.settings import Settings, load_settings, mask_url


def test_defaults_put_everything_under_home(tmp_path: Path) -> None:
    s = load_settings({}, home=tmp_path)
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'chainkeeper.db'}"
    assert s.resolved_artifacts_url == str((tmp_path / "artifacts").resolve())
    assert (s.resolved_base_model / "config.json").is_file()


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    config = tmp_path / "ck.toml"
    config.write_text('port = 9000\nlog_level = "debug"\n')
    s = load_settings({"CHAINKEEPER_PORT": "9100"}, config_file=config)
    assert s.port == 9100 and s.log_level == "DEBUG"
    assert load_settings({"CHAINKEEPER_PORT": "9100"}, config_file=config, port=9200).port == 9200


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "ck.toml"
    config.write_text("heartbeat_s = 2.5\n")
    assert load_settings({"CHAINKEEPER_CONFIG": str(config)}).heartbeat_s == 2.5


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        pytest.param({"CHAINKEEPER_PROT": "1"}, "Unknown setting in the environment: CHAINKEEPER_PROT", id="typo"),
        pytest.param({"CHAINKEEPER_PORT": "eighty"}, "port", id="not-a-number"),
        pytest.param({"CHAINKEEPER_PORT": "70000"}, "port", id="out-of-range"),
        pytest.param({"CHAINKEEPER_LOG_LEVEL": "LOUD"}, "log_level", id="bad-level"),
    ],
)
def test_bad_environment_is_a_config_error_naming_the_key(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(environ)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "ck.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="Unknown key.*prot"):
        load_settings({}, config_file=config)


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings({}, config_file=tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=bad)


def test_test_suite_variables_are_not_settings() -> None:
    assert load_settings({"CHAINKEEPER_TEST_POSTGRES_URL": "postgresql://x"}).port == 8000


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql+psycopg://bob:s3cret@db:5432/ck") == "postgresql+psycopg://bob:***@db:5432/ck"
    s = load_settings({}, database_url="postgresql+psycopg://bob:s3cret@db/ck")
    assert "s3cret" not in str(s.masked())
    # Issue 15, item 9: libpq takes the password as a query parameter too.
    assert mask_url("postgresql+psycopg://db/ck?user=bob&password=s3cret&sslmode=require") == \
        "postgresql+psycopg://db/ck?user=bob&password=***&sslmode=require"
    assert mask_url("s3://bucket/a?token=abc&region=eu") == "s3://bucket/a?token=***&region=eu"
    assert mask_url("sqlite:///x.db?mode=ro&flag") == "sqlite:///x.db?mode=ro&flag"
    s = load_settings({}, database_url="postgresql+psycopg://db/ck?password=s3cret")
    assert "s3cret" not in str(s.masked())


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 15, name


def test_every_setting_is_in_the_configuration_doc() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"CHAINKEEPER_{name.upper()}" not in doc]
    assert not missing, f"document these in docs/configuration.md: {missing}"
