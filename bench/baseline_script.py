"""The per-record baseline: the sync script an admin would write in-house, prospect by prospect.

Issue 13 measures syncd against it ("at least 20 times faster than the per-record script"), so
it is written the way such scripts are: simple-salesforce for Salesforce, requests for Pardot,
one record at a time, no batching, no concurrency, no state kept between runs:

1. read every Pardot user (for owners) and page through every prospect (1,000 a page);
2. per prospect: a SOQL lookup of a Contact by email, then of a Lead if there is none;
   - found: fill the CRM record's blank fields from Pardot (one update call), and write the
     CRM's values to Pardot where they differ or Pardot is blank (one PATCH), the CRM being
     master as in the Salesforce connector;
   - not found and assigned: create a Lead (owner: the assignee's CRM user) (one create call);
3. page through the sent emails and log one Task a send on the prospect's CRM record (one
   create call each).

It maps the fields syncd maps by default that such a script would carry (names, title, phone,
company, source). Run it as `python -m bench.baseline_script --salesforce URL --pardot URL
--client-id ID --business-unit-id 0Uv...` with the client secret in `BASELINE_CLIENT_SECRET`
(or `--client-secret`); it prints one JSON line of counts. `bench.compare` runs it beside
`syncd once` on the same world.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

# (Pardot field, Salesforce field, on Leads only)
FIELDS = (
    ("firstName", "FirstName", False),
    ("lastName", "LastName", False),
    ("jobTitle", "Title", False),
    ("phone", "Phone", False),
    ("company", "Company", True),
    ("source", "LeadSource", False),
)
PROSPECT_FIELDS = "id,email,userId," + ",".join(p for p, _, _ in FIELDS)


class _PlainHttp(HTTPAdapter):
    """simple-salesforce builds https:// URLs; the local simulators serve plain HTTP."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.url:
            request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, *args, **kwargs)


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Script:
    """The script's state: two sessions and what it has linked so far (in memory only)."""

    def __init__(self, args: argparse.Namespace) -> None:
        token = requests.post(
            f"{args.salesforce}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": args.client_id,
                "client_secret": args.client_secret,
            },
            timeout=60,
        )
        token.raise_for_status()
        auth = token.json()
        session = requests.Session()
        session.mount("https://", _PlainHttp())
        self.sf = Salesforce(
            instance_url=auth["instance_url"],
            session_id=auth["access_token"],
            session=session,
            version=args.api_version,
        )
        self.pardot = requests.Session()
        self.pardot.headers.update(
            {
                "Authorization": f"Bearer {auth['access_token']}",
                "Pardot-Business-Unit-Id": args.business_unit_id,
            }
        )
        self.pardot_url = args.pardot.rstrip("/") + "/api/v5/objects"
        self.crm_of: dict[int, str] = {}
        self.counts = {
            "prospects": 0,
            "soql": 0,
            "leads_created": 0,
            "crm_updates": 0,
            "pardot_patches": 0,
            "tasks": 0,
            "skipped": 0,
        }

    def pages(self, collection: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url = f"{self.pardot_url}/{collection}"
        fields = params["fields"]
        while True:
            r = self.pardot.get(url, params=params, timeout=60)
            r.raise_for_status()
            body = r.json()
            yield from body["values"]
            if not body.get("nextPageToken"):
                return
            params = {"fields": fields, "nextPageToken": body["nextPageToken"]}

    def find(self, email: str) -> tuple[str, dict[str, Any]] | None:
        for sobject, extra in (("Contact", ""), ("Lead", ", Company")):
            cols = "Id, FirstName, LastName, Title, Phone, LeadSource, OwnerId" + extra
            q = (
                f"SELECT {cols} FROM {sobject} WHERE Email = {soql_quote(email)} "
                "ORDER BY CreatedDate, Id LIMIT 1"
            )
            self.counts["soql"] += 1
            records = self.sf.query(q)["records"]
            if records:
                return sobject, records[0]
        return None

    def sync_prospect(self, p: dict[str, Any], owners: dict[int, str | None]) -> None:
        self.counts["prospects"] += 1
        found = self.find(p["email"])
        if found is None:
            if not p.get("userId"):
                self.counts["skipped"] += 1
                return
            lead: dict[str, Any] = {"Email": p["email"]}
            for pf, sf_field, _ in FIELDS:
                if p.get(pf):
                    lead[sf_field] = p[pf]
            lead.setdefault("LastName", "[[unknown]]")
            lead.setdefault("Company", "[[unknown]]")
            owner = owners.get(p["userId"])
            if owner:
                lead["OwnerId"] = owner
            created = self.sf.Lead.create(lead)
            self.counts["leads_created"] += 1
            self.crm_of[p["id"]] = created["id"]
            return
        sobject, rec = found
        self.crm_of[p["id"]] = rec["Id"]
        to_crm: dict[str, Any] = {}
        to_pardot: dict[str, Any] = {}
        for pf, sf_field, lead_only in FIELDS:
            if lead_only and sobject != "Lead":
                continue
            pv, cv = p.get(pf), rec.get(sf_field)
            if cv in (None, "") and pv not in (None, ""):
                to_crm[sf_field] = pv
            elif cv not in (None, "") and cv != pv:
                to_pardot[pf] = cv
        if to_crm:
            getattr(self.sf, sobject).update(rec["Id"], to_crm)
            self.counts["crm_updates"] += 1
        if to_pardot:
            r = self.pardot.patch(
                f"{self.pardot_url}/prospects/{p['id']}", json=to_pardot, timeout=60
            )
            r.raise_for_status()
            self.counts["pardot_patches"] += 1

    def log_emails(self) -> None:
        params = {"fields": "id,prospectId,subject,sentAt", "orderBy": "id", "limit": 1000}
        for email in self.pages("emails", params):
            who = self.crm_of.get(email.get("prospectId") or 0)
            if who is None:
                continue
            self.sf.Task.create(
                {
                    "WhoId": who,
                    "Subject": f"Email: {email.get('subject') or ''}",
                    "ActivityDate": str(email["sentAt"])[:10],
                    "Status": "Completed",
                    "TaskSubtype": "Email",
                }
            )
            self.counts["tasks"] += 1

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        users = self.pages("users", {"fields": "id,salesforceId", "limit": 1000})
        owners = {int(u["id"]): u.get("salesforceId") for u in users}
        for p in self.pages("prospects", {"fields": PROSPECT_FIELDS, "limit": 1000}):
            self.sync_prospect(p, owners)
        self.log_emails()
        return {**self.counts, "wall_s": round(time.monotonic() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_script", description=__doc__)
    p.add_argument("--salesforce", required=True, help="Salesforce base URL")
    p.add_argument("--pardot", required=True, help="Pardot base URL")
    p.add_argument("--client-id", required=True)
    p.add_argument(
        "--client-secret",
        default=os.environ.get("BASELINE_CLIENT_SECRET"),
        help="or the environment variable BASELINE_CLIENT_SECRET (kept out of `ps`)",
    )
    p.add_argument("--business-unit-id", required=True)
    p.add_argument("--api-version", default="60.0")
    args = p.parse_args(argv)
    if not args.client_secret:
        p.error("set --client-secret or BASELINE_CLIENT_SECRET")
    print(json.dumps(Script(args).run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
