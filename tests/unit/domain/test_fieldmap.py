"""The default field map (the seed's policies) and `[fields]` overrides."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from syncd.domain.fieldmap import FieldMap, FieldRule
from syncd.domain.models import CrmType, Policy

DEFAULT = FieldMap.default()


@pytest.mark.parametrize(
    ("pardot", "policy", "kind"),
    [
        pytest.param("email", Policy.CRM, "email", id="email-crm"),
        pytest.param("firstName", Policy.CRM, "str", id="standard-field-crm-master"),
        pytest.param("campaignId", Policy.PARDOT, "str", id="pardot-campaign"),
        pytest.param("comments", Policy.PARDOT, "str", id="pardot-comments"),
        pytest.param("createdAt", Policy.PARDOT, "datetime", id="pardot-created-date"),
        pytest.param("lastActivityAt", Policy.PARDOT, "datetime", id="pardot-last-activity"),
        pytest.param("score", Policy.PARDOT, "int", id="pardot-score"),
        pytest.param("grade", Policy.PARDOT, "str", id="pardot-grade"),
        # Issue 15: an unsubscribe is a legal fact, not a field value (no more "most recent").
        pytest.param("optedOut", Policy.OPT_OUT_WINS, "bool", id="opt-out-wins"),
    ],
)
def test_default_policies_follow_the_seed(pardot: str, policy: Policy, kind: str) -> None:
    rule = DEFAULT.rule(pardot)
    assert rule is not None
    assert (rule.policy, rule.kind) == (policy, kind)


def test_contact_uses_mailing_address_and_has_no_company_or_website() -> None:
    contact = DEFAULT.crm_fields(CrmType.CONTACT)
    lead = DEFAULT.crm_fields(CrmType.LEAD)
    assert "MailingStreet" in contact and "Street" not in contact
    assert "Company" not in contact and "Website" not in contact
    assert {"Company", "Website", "Street", "PostalCode"} <= set(lead)
    assert "Id" in DEFAULT.crm_select_fields(CrmType.LEAD)
    assert "IsConverted" in DEFAULT.crm_select_fields(CrmType.LEAD)
    for crm_type in CrmType:  # a deleted record read by queryAll names its merge survivor
        assert "MasterRecordId" in DEFAULT.crm_select_fields(crm_type)


def test_pardot_fields_include_the_link_fields() -> None:
    fields = DEFAULT.pardot_fields()
    for name in ("id", "email", "userId", "updatedAt", "salesforceId", "salesforceLeadId"):
        assert name in fields
    assert len(fields) == len(set(fields))


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(
            {"crm": "Industry__c", "policy": "pardot", "blank_overwrites": True}, id="dict"
        ),
        pytest.param(
            SimpleNamespace(crm="Industry__c", policy="pardot", blank_overwrites=True), id="attrs"
        ),
    ],
)
def test_override_adds_a_custom_field(entry: Any) -> None:
    fmap = DEFAULT.with_overrides({"industry__c": entry})
    rule = fmap.rule("industry__c")
    assert rule == FieldRule(
        pardot="industry__c",
        crm_lead="Industry__c",
        crm_contact="Industry__c",
        policy=Policy.PARDOT,
        blank_overwrites=True,
    )
    assert "Industry__c" in fmap.crm_fields(CrmType.CONTACT)
    assert "industry__c" in fmap.pardot_fields()


def test_override_changes_policy_and_keeps_the_default_mapping() -> None:
    fmap = DEFAULT.with_overrides({"city": {"policy": "recent"}})
    rule = fmap.rule("city")
    assert rule is not None
    assert (rule.crm_lead, rule.crm_contact, rule.policy) == ("City", "MailingCity", Policy.RECENT)
    assert [r.pardot for r in fmap.rules] == [r.pardot for r in DEFAULT.rules]


def test_policy_none_disables_a_field() -> None:
    fmap = DEFAULT.with_overrides({"phone": {"policy": "none"}})
    assert "Phone" not in fmap.crm_fields(CrmType.LEAD)
    assert "phone" not in fmap.pardot_fields()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"phone": {"policy": "sometimes"}}, "fields.phone", id="unknown-policy"),
        pytest.param({"x__c": {"policy": "crm"}}, "fields.x__c: set crm", id="custom-without-crm"),
        pytest.param({"jobTitle": {"crm": "Phone"}}, "both map to Lead.Phone", id="duplicate"),
        pytest.param({"salesforceId": {"crm": "Id"}}, "kept by the sync", id="link-field"),
        pytest.param({"x__c": {"crm": "X__c", "kind": "money"}}, "fields.x__c", id="bad-kind"),
    ],
)
def test_bad_overrides_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DEFAULT.with_overrides(overrides)


@pytest.mark.parametrize(
    ("pardot", "policy"),
    [
        pytest.param("grade", "crm", id="grade-crm"),
        pytest.param("grade", "recent", id="grade-recent"),
        pytest.param("createdAt", "to_pardot", id="created-to-pardot"),
        pytest.param("lastActivityAt", "crm", id="last-activity-crm"),
        pytest.param("salesforceAccountId", "crm", id="connector-owned"),
        pytest.param("utmSourceParameter", "crm", id="utm-parameter"),
    ],
)
def test_a_field_entry_that_would_write_a_read_only_pardot_field_is_refused(
    pardot: str, policy: str
) -> None:
    with pytest.raises(ValueError, match=rf"fields\.{pardot}: Pardot API v5 makes .* read-only"):
        DEFAULT.with_overrides({pardot: {"crm": "Some_Field__c", "policy": policy}})


@pytest.mark.parametrize("policy", ["pardot", "to_crm", "none"])
def test_read_only_pardot_fields_may_still_flow_to_the_crm(policy: str) -> None:
    fmap = DEFAULT.with_overrides({"grade": {"policy": policy}})
    rule = fmap.rule("grade")
    assert rule is not None
    assert rule.effective_policy is (Policy.NONE if policy == "none" else Policy.TO_CRM)


@pytest.mark.parametrize(
    "pardot", ["salesforceId", "salesforceLeadId", "salesforceContactId", "userId",
               "salesforceOwnerId"]
)  # fmt: skip
def test_link_and_owner_fields_are_kept_by_the_sync_itself(pardot: str) -> None:
    with pytest.raises(ValueError, match="kept by the sync itself"):
        DEFAULT.with_overrides({pardot: {"crm": "X__c", "policy": "pardot"}})


def test_no_default_rule_can_write_a_read_only_pardot_field() -> None:
    from syncd.domain.fieldmap import is_read_only_pardot_field

    for rule in DEFAULT.rules:
        if is_read_only_pardot_field(rule.pardot):
            assert rule.effective_policy in (Policy.TO_CRM, Policy.NONE), rule.pardot
