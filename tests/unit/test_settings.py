"""Settings: TOML + environment, the example file documents every key, bad input exits 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.settings import Settings, check_environment, load_settings, setting_env_names

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "syncd.example.toml"


def test_defaults_match_interfaces() -> None:
    s = load_settings()
    assert s.database.url == "sqlite+aiosqlite:///syncd.db"
    assert s.salesforce.login_url == "https://login.salesforce.com"
    assert s.salesforce.auth_flow == "client_credentials"
    assert s.salesforce.api_version == "60.0"
    assert s.pardot.base_url == "https://pi.pardot.com"
    assert s.pardot.daily_api_limit == 25_000
    assert s.pardot.max_concurrency == 5
    assert s.sync.poll_interval_s == 30
    assert s.sync.email_activities is True
    assert s.sync.auto_create_prospects is False
    assert s.sync.api_budget_share == 0.5
    assert s.sync.assignment == "user"


def test_example_file_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    documented: set[str] = set()
    section = ""
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.match(r"^#?\s?(\w+) = ", line):
            documented.add(f"{section}.{m.group(1)}")
    expected = {
        f"{name}.{key}"
        for name, field in Settings.model_fields.items()
        if name != "fields"
        for key in field.annotation.model_fields  # type: ignore[union-attr]
    }
    assert expected - documented == set()
    # and the example loads as it is
    assert load_settings(EXAMPLE).sync.batch_size == 200


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text('[sync]\npoll_interval_s = 10\n[salesforce]\nclient_id = "from-file"\n')
    monkeypatch.setenv("SYNCD_SYNC__POLL_INTERVAL_S", "5")
    s = load_settings(cfg)
    assert s.sync.poll_interval_s == 5
    assert s.salesforce.client_id == "from-file"


def test_syncd_config_env_and_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syncd.toml").write_text("[sync]\nworkers = 3\n")
    assert load_settings().sync.workers == 3
    other = tmp_path / "other.toml"
    other.write_text("[sync]\nworkers = 4\n")
    monkeypatch.setenv("SYNCD_CONFIG", str(other))
    assert load_settings().sync.workers == 4


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ('[database]\nurl = "mysql://x"\n', ["database.url", "SYNCD_DATABASE__URL"]),
        ("[sync]\napi_budget_share = 2\n", ["sync.api_budget_share"]),
        ('[sync]\nassignment = "queue"\n', ["assignment_queue_id"]),
        ('[salesforce]\nlogin_url = "login.salesforce.com"\n', ["salesforce.login_url"]),
        ("[sync]\npoll_intervl_s = 3\n", ["sync.poll_intervl_s", "unknown setting"]),
        ('[ops]\nlisten = "nonsense"\n', ["ops.listen", "host:port"]),
        ("[sync\n", ["cannot read the config file"]),
    ],
    ids=["bad-db-url", "share>1", "queue-without-id", "url-no-scheme", "typo", "listen", "toml"],
)
def test_bad_settings_name_what_to_fix(tmp_path: Path, toml: str, names: list[str]) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    for name in names:
        assert name in str(err.value)


def test_missing_credentials_are_named() -> None:
    s = load_settings()
    with pytest.raises(ConfigError, match="SYNCD_SALESFORCE__CLIENT_ID"):
        s.require_salesforce()
    with pytest.raises(ConfigError, match="business_unit_id"):
        s.require_pardot()


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_SALESFORCE__CLIENT_SECRET", "s3cr3t-value-xyz")
    s = load_settings()
    assert "s3cr3t-value-xyz" not in repr(s)
    assert s.salesforce.client_secret is not None
    assert s.salesforce.client_secret.get_secret_value() == "s3cr3t-value-xyz"


def test_cli_exits_2_on_bad_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sync]\nworkers = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "status", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sync.workers" in proc.stderr
    assert "SYNCD_SYNC__WORKERS" in proc.stderr


def test_cli_exits_2_on_missing_config_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "status", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no such file" in proc.stderr


def test_unknown_toml_key_names_the_right_key_and_the_file_read(tmp_path: Path) -> None:
    cfg = tmp_path / "other-name.toml"
    cfg.write_text(
        '[sync]\npoll_intervl_s = 3\n[synk]\nworkers = 2\n[fields.jobTitle]\npolcy = "crm"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "did you mean sync.poll_interval_s?" in text
    assert "SYNCD_SYNC__POLL_INTERVAL_S" in text
    assert "SYNCD_SYNC__POLL_INTERVL_S" not in text  # never tell you to set the typo
    assert "did you mean [sync]?" in text
    assert "did you mean policy?" in text
    assert str(cfg) in text
    assert "syncd.toml" not in text  # the file read was another one


def test_missing_setting_hint_names_the_file_read(tmp_path: Path) -> None:
    cfg = tmp_path / "prod.toml"
    cfg.write_text("[sync]\nworkers = 2\n")
    with pytest.raises(ConfigError, match=r"\[pardot\] business_unit_id in .*prod\.toml"):
        load_settings(cfg).require_pardot()


@pytest.mark.parametrize(
    ("name", "nearest"),
    [
        ("SYNCD_DATABASE_URL", "SYNCD_DATABASE__URL"),
        ("SYNCD_SYNK__POLL_INTERVAL_S", "SYNCD_SYNC__POLL_INTERVAL_S"),
        ("SYNCD_SYNC__POLL_INTERVL_S", "SYNCD_SYNC__POLL_INTERVAL_S"),
        ("SYNCD_SALESFORCE_CLIENT_SECRET", "SYNCD_SALESFORCE__CLIENT_SECRET"),
        ("syncd_log__levl", "SYNCD_LOG__LEVEL"),
    ],
)
def test_unknown_environment_variable_names_the_nearest_setting(name: str, nearest: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_environment({name: "x", "PATH": "/bin"})
    assert f"{name} is not a setting; did you mean {nearest}?" in str(err.value)


def test_unknown_environment_variables_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("SYNCD_NOPE", "1")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "SYNCD_DATABASE_URL" in str(err.value) and "SYNCD_NOPE" in str(err.value)


def test_tool_variables_and_every_setting_are_allowed() -> None:
    env = {
        "SYNCD_CONFIG": "x.toml",
        "SYNCD_TEST_POSTGRES_URL": "postgresql+asyncpg://x",
        "SYNCD_BENCH_PYSPY": "/tmp/p",
        "SYNCD_BENCH_POSTGRES_URL": "postgresql+asyncpg://x",
        "SYNCD_FIELDS__jobTitle__crm": "Title",
        "SYNCD_FIELDS__jobTitle": '{"crm": "Title"}',
        "SYNCD_SYNC": '{"workers": 3}',
        "syncd_sync__workers": "3",  # pydantic-settings reads names case-insensitively
    }
    env.update({name: "1" for name in setting_env_names() if "*" not in name})
    check_environment(env)
    # the listed names are exactly what pydantic-settings reads
    assert "SYNCD_DATABASE__URL" in setting_env_names()
    assert "SYNCD_SALESFORCE__CLIENT_SECRET" in setting_env_names()


def test_cli_exits_2_on_a_mistyped_environment_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["SYNCD_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/intended.db"
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SYNCD_DATABASE_URL" in lines[0]
    assert "did you mean SYNCD_DATABASE__URL?" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no fresh ./syncd.db quietly created
