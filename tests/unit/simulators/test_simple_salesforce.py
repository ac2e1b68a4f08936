"""simple-salesforce (a widely used third-party client) against the simulator over real HTTP.

If an independent client works against the simulator unchanged, the simulator's URLs, headers
and bodies are shaped like the real API's, not just like our own client's expectations.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import uvicorn
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from syncd.simulators.salesforce import SalesforceSimulator

SEED: dict[str, Any] = {
    "oauth": {"client_id": "cid", "client_secret": "csecret", "username": "connector@acme.example"},
    "users": [{"Username": "connector@acme.example", "LastName": "Connector"}],
    "leads": [{"Email": "jane@acme.example", "LastName": "Doe", "Company": "Acme"}],
}


class _PlainHttpAdapter(HTTPAdapter):
    """simple-salesforce always builds https:// URLs; the simulator serves plain HTTP."""

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        assert request.url is not None
        request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, *args, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served() -> Iterator[SalesforceSimulator]:
    sim = SalesforceSimulator(SEED)
    port = _free_port()
    sim.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(sim.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield sim
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def sf(served: SalesforceSimulator) -> Salesforce:
    token = requests.post(
        f"{served.base_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"},
        timeout=10,
    ).json()
    session = requests.Session()
    session.mount(served.base_url.replace("http://", "https://"), _PlainHttpAdapter())
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version="60.0",
    )


def test_query(sf: Salesforce) -> None:
    result = sf.query("SELECT Id, Email FROM Lead WHERE Email = 'JANE@acme.example'")
    assert result["totalSize"] == 1
    assert result["records"][0]["Email"] == "jane@acme.example"
    assert sf.api_usage["api-usage"].used >= 1  # parsed from the Sforce-Limit-Info header


def test_crud(sf: Salesforce, served: SalesforceSimulator) -> None:
    created = sf.Lead.create(
        {"LastName": "Smith", "Company": "SmithCorp", "Email": "s@smith.example"}
    )
    assert created["success"] is True
    lead_id = created["id"]
    assert sf.Lead.get(lead_id)["Status"] == "Open - Not Contacted"
    assert sf.Lead.update(lead_id, {"Title": "CTO"}) == 204
    assert served.get("Lead", lead_id)["Title"] == "CTO"  # type: ignore[index]
    assert sf.Lead.delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(lead_id)
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Lead.create({"LastName": "NoCompany"})
    assert info.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_query_all_pages(sf: Salesforce, served: SalesforceSimulator) -> None:
    for n in range(2300):
        served.insert("Lead", {"LastName": f"P{n}", "Company": "Paged"})
    result = sf.query_all("SELECT Id FROM Lead WHERE Company = 'Paged'")
    assert result["totalSize"] == 2300
    assert len(result["records"]) == 2300
    assert len({r["Id"] for r in result["records"]}) == 2300


def test_collection_call(sf: Salesforce, served: SalesforceSimulator) -> None:
    answer = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "C1", "Company": "Coll"},
                {
                    "attributes": {"type": "Lead"},
                    "LastName": "C2",
                    "Company": "Coll",
                    "Email": "bad",
                },
            ],
        },
    )
    assert answer[0]["success"] is True
    assert answer[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert served.get("Lead", answer[0]["id"]) is not None
