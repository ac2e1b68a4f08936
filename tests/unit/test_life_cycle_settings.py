"""The record life-cycle settings (issue 15): `sync.crm_delete_action`, `sync.opt_in_owner`,
and the `opt_out_wins` policy, from TOML and the environment to the domain's `SyncConfig`."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import Policy
from syncd.errors import ConfigError
from syncd.runtime.wiring import sync_config
from syncd.settings import load_settings


def test_defaults_mark_and_pardot_owns_opt_ins() -> None:
    s = load_settings()
    assert (s.sync.crm_delete_action, s.sync.opt_in_owner) == ("mark", "pardot")
    config = sync_config(s, FieldMap.default())
    assert (config.crm_delete_action, config.opt_in_owner) == ("mark", "pardot")
    rule = config.field_map.rule("optedOut")
    assert rule is not None and rule.policy is Policy.OPT_OUT_WINS


def test_file_and_environment_reach_the_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text('[sync]\ncrm_delete_action = "recycle"\n')
    monkeypatch.setenv("SYNCD_SYNC__OPT_IN_OWNER", "crm")
    config = sync_config(load_settings(cfg), FieldMap.default())
    assert (config.crm_delete_action, config.opt_in_owner) == ("recycle", "crm")


@pytest.mark.parametrize(
    ("toml", "name"),
    [
        ('[sync]\ncrm_delete_action = "purge"\n', "sync.crm_delete_action"),
        ('[sync]\nopt_in_owner = "both"\n', "sync.opt_in_owner"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, toml: str, name: str) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert name in str(err.value)


def test_opt_out_wins_is_a_field_policy(tmp_path: Path) -> None:
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(
        '[fields.isDoNotEmail]\ncrm = "DoNotEmail__c"\npolicy = "opt_out_wins"\n'
        '[fields.optedOut]\ncrm = "HasOptedOutOfEmail"\npolicy = "recent"\n'
    )
    s = load_settings(cfg)
    assert s.fields["isDoNotEmail"].policy == "opt_out_wins"
    assert s.fields["optedOut"].policy == "recent"
    fmap = FieldMap.default().with_overrides(s.fields)
    added = fmap.rule("isDoNotEmail")
    assert added is not None and (added.policy, added.kind) == (Policy.OPT_OUT_WINS, "bool")
    kept = fmap.rule("optedOut")
    assert kept is not None and kept.policy is Policy.RECENT
