"""OAuth 2.0: the token endpoint (client credentials, password, refresh token, JWT bearer),
bearer tokens on REST calls, and the identity URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import jwt

from syncd.simulators.salesforce.composite import CompositeApi
from syncd.simulators.salesforce.schema import (
    LOGIN_AUDIENCES,
    sf_datetime,
)
from syncd.simulators.salesforce.wire import (
    _oauth_error,
    _OAuthError,
    _Response,
)


class OAuthApi(CompositeApi):
    """Who is calling."""

    def _token(self, body: bytes, headers: Mapping[str, str]) -> _Response:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type", "")
        flows: dict[str, Callable[[dict[str, str]], tuple[str, dict[str, Any]]]] = {
            "client_credentials": self._grant_client_credentials,
            "password": self._grant_password,
            "refresh_token": self._grant_refresh,
            "urn:ietf:params:oauth:grant-type:jwt-bearer": self._grant_jwt,
        }
        flow = flows.get(grant)
        if flow is None:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        try:
            user_id, extra = flow(form)
        except _OAuthError as exc:
            return _oauth_error(exc.error, exc.description)
        issued = self.tokens.issue(user_id, self.org_id)
        issued_at = str(int(issued.issued_at.timestamp() * 1000))
        ident = f"{self.base_url}/id/{self.org_id}/{user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (ident + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        answer = {
            "access_token": issued.token,
            **extra,
            "signature": signature,
            "scope": "api",
            "instance_url": self.base_url,
            "id": ident,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        return _Response(
            200, answer, {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}
        )

    def _check_client(self, form: Mapping[str, str], *, secret_required: bool) -> None:
        if form.get("client_id") != self.client_id:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        if (secret_required or secret is not None) and secret != self.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials")

    def _user_by_username(self, username: str | None) -> dict[str, Any] | None:
        for user in self.tables["User"].rows.values():
            if username and user.get("Username", "").casefold() == username.casefold():
                return user
        return None

    def _grant_client_credentials(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=True)
        return self.connector_user_id, {}

    def _grant_password(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=True)
        user = self._user_by_username(form.get("username"))
        password = form.get("password", "")
        if (
            user is None
            or not user.get("IsActive")
            or not password
            or (self.oauth_password is not None and password != self.oauth_password)
        ):
            raise _OAuthError("invalid_grant", "authentication failure")
        return user["Id"], {}

    def _grant_refresh(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        self._check_client(form, secret_required=False)
        token = form.get("refresh_token", "")
        if token not in self._refresh_tokens:
            raise _OAuthError("invalid_grant", "expired access/refresh token")
        extra: dict[str, Any] = {}
        if self.rotate_refresh_tokens:
            self._refresh_tokens.discard(token)
            fresh = f"5Aep{secrets.token_urlsafe(60)}"
            self._refresh_tokens.add(fresh)
            extra["refresh_token"] = fresh
        return self.connector_user_id, extra

    def _grant_jwt(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") != "RS256":
                raise _OAuthError("invalid_grant", "invalid assertion")
            if self.jwt_public_key:
                claims = jwt.decode(
                    assertion, self.jwt_public_key, algorithms=["RS256"],
                    options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                             "verify_nbf": False},
                )  # fmt: skip
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.client_id:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        allowed = {*LOGIN_AUDIENCES, self.base_url.rstrip("/")}
        if not any(isinstance(a, str) and a.rstrip("/") in allowed for a in audiences):
            raise _OAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock().timestamp():
            raise _OAuthError("invalid_grant", "expired authorization code")
        user = self._user_by_username(claims.get("sub"))
        if user is None or not user.get("IsActive"):
            raise _OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user["Id"], {}

    def _bearer(
        self, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token:
            issued = self.tokens.validate(token.strip())
            return issued.user_id if issued is not None and issued.org_id == self.org_id else None
        if params and params.get("oauth_token"):
            issued = self.tokens.validate(params["oauth_token"])
            return issued.user_id if issued is not None else None
        return None

    def _identity(
        self, path: str, headers: Mapping[str, str], params: Mapping[str, str]
    ) -> _Response:
        user_id = self._bearer(headers, params)
        parts = path.strip("/").split("/")
        if user_id is None:
            return _Response(403, raw=b"Bad_OAuth_Token", content_type="text/plain")
        if (
            len(parts) != 3
            or parts[1] != self.org_id
            or self.tables["User"].resolve(parts[2]) != user_id
        ):
            return _Response(403, raw=b"Forbidden", content_type="text/plain")
        user = self.tables["User"].rows[user_id]
        base = self.base_url
        return _Response(
            200,
            {
                "id": f"{base}/id/{self.org_id}/{user_id}",
                "asserted_user": True,
                "user_id": user_id,
                "organization_id": self.org_id,
                "username": user["Username"],
                "nick_name": user["Username"].split("@")[0],
                "display_name": user.get("Name"),
                "email": user.get("Email"),
                "email_verified": True,
                "first_name": user.get("FirstName"),
                "last_name": user.get("LastName"),
                "timezone": "GMT",
                "active": bool(user.get("IsActive")),
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "last_modified_date": sf_datetime(user["LastModifiedDate"]),
                "is_app_installed": True,
                "urls": {
                    "rest": f"{base}/services/data/v{{version}}/",
                    "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                    "query": f"{base}/services/data/v{{version}}/query/",
                    "limits": f"{base}/services/data/v{{version}}/limits/",
                    "profile": f"{base}/{user_id}",
                },
            },
        )
