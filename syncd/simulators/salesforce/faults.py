"""The answers of injected faults, as Salesforce would give them (5xx bodies, request limits)."""

from __future__ import annotations

import secrets

from syncd.simulators._base import (
    CannedResponse,
    json_bytes,
)
from syncd.simulators.salesforce.rest import RestApi


class FaultAnswers(RestApi):
    """Bodies for `SimulatorMiddleware`'s injected faults."""

    def _fault_5xx(self, status: int) -> CannedResponse:
        if status == 503:
            # UNCONFIRMED: the body of a maintenance 503; Salesforce documents only the status.
            body = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server Unavailable"}]
        else:
            n = secrets.randbelow
            ref = f"{n(10**9)}-{n(10**5)} ({-n(10**9)})"
            body = [
                {
                    "errorCode": "UNKNOWN_EXCEPTION",
                    "message": f"An unexpected error occurred. Please include this ErrorId if you"
                    f" contact support: {ref}",
                }
            ]
        return CannedResponse(status, json_bytes(body), headers=(self._limit_header(),))

    def _fault_burst(self) -> CannedResponse:
        body = [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]
        return CannedResponse(403, json_bytes(body), headers=(self._limit_header(),))
