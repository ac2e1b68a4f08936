"""The console's Starlette app: pages, the JSON API, sign-in, and the ops routes.

Routes (docs/interfaces.md): pages `/`, `/errors`, `/prospects?q=`, `/prospects/{id}`, `/activity`,
`/settings`; JSON `/api/status`, `/api/errors`, `/api/prospects/{id}`, `/api/activity`;
actions (POST, CSRF-checked, admin only, audited with who): `/errors/retry`,
`/prospects/{id}/sync`, `/control/{side}/pause|resume` and the same under `/api/`;
`/login`, `/logout`; `/healthz`, `/readyz`, `/metrics` as before (`/healthz` never needs a
token). Access rules are in `syncd.web.auth`.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from syncd import logs
from syncd.runtime.metrics import CONTENT_TYPE
from syncd.runtime.ops import OpsHandlers
from syncd.store.control import SIDES
from syncd.web import views
from syncd.web.auth import (
    COOKIE,
    LOGIN_COOKIE,
    SESSION_S,
    Auth,
    Principal,
    Role,
    SignInThrottle,
)
from syncd.web.svg import bars

log = logs.get(__name__)

MAX_BODY = 1024 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]
Guarded = Callable[[Request, Principal], Awaitable[Response]]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript"}


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("syncd.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["num"] = lambda v: "-" if v is None else f"{v:,}"
    env.filters["when"] = lambda v: "-" if not v else str(v).replace("T", " ")[:19]
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, default=str)
    env.globals["bars"] = bars
    return env


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValueError("request body too large")
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in data.items()}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


class ConsoleApp:
    """Builds the Starlette app for one `ConsoleContext` (`build_app`)."""

    def __init__(self, ctx: views.ConsoleContext | None, handlers: OpsHandlers, auth: Auth):
        self.ctx = ctx
        self.handlers = handlers
        self.auth = auth
        self.env = _env()
        clock = (lambda: ctx.clock().timestamp()) if ctx is not None else time.monotonic
        self.throttle = SignInThrottle(clock=clock)

    # -- access ---------------------------------------------------------------------------------

    def _principal(self, request: Request) -> tuple[Principal | None, str | None]:
        """(the caller, a new open-mode cookie to set or None)."""
        header = request.headers.get("authorization")
        if header:
            if not self.auth.required:  # no token configured: a scraper's header changes nothing
                # (another site cannot make a browser send this header, so no CSRF token either)
                return Principal(Role.ADMIN, "anonymous", None, via_header=True), None
            return self.auth.from_header(header), None
        cookie = request.cookies.get(COOKIE)
        if cookie:
            found = self.auth.from_cookie(cookie)
            if found is not None:
                return found, None
        if not self.auth.required:
            fresh = self.auth.new_session(Role.ADMIN)
            return self.auth.from_cookie(fresh), fresh
        return None, None

    def guard(self, fn: Guarded, *, kind: str = "page", action: bool = False) -> Endpoint:
        """Wrap an endpoint: authenticate, check CSRF and role on actions, add headers."""

        async def endpoint(request: Request) -> Response:
            by_header = self.auth.required and "authorization" in request.headers
            if by_header:
                wait = self.throttle.wait_s(_address(request))
                if wait is not None:
                    return self._throttled(kind, wait)
            principal, fresh = self._principal(request)
            if principal is None and by_header:
                self._refused(request)
            if principal is None:
                response = self._unauthenticated(request, kind)
            elif action and request.method == "POST":
                response = await self._act(request, principal, fn, kind)
            else:
                response = await fn(request, principal)
            if fresh is not None:
                self._set_session(request, response, fresh)
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    async def _act(self, request: Request, who: Principal, fn: Guarded, kind: str) -> Response:
        try:
            form = await _form(request)
        except ValueError as exc:
            return self._refuse(kind, 400, f"bad request: {exc}")
        presented = request.headers.get("x-csrf-token") or _first(form, "csrf")
        if not self.auth.csrf_ok(who, presented):
            log.warning("console_csrf_refused", path=request.url.path, who=who.who)
            return self._refuse(kind, 403, "refused: missing or wrong CSRF token; reload the page")
        if not who.can_act:
            log.warning("console_action_refused", path=request.url.path, who=who.who)
            return self._refuse(kind, 403, "refused: the viewer token can look but not act")
        request.state.form = form
        return await fn(request, who)

    def _refused(self, request: Request) -> None:
        """Count a wrong token from this address (the throttle starts at the limit)."""
        if self.throttle.refused(_address(request)):
            log.warning(
                "console_sign_in_throttled",
                address=_address(request),
                refusals=self.throttle.allowed,
                window_s=self.throttle.window_s,
            )

    def _throttled(self, kind: str, wait_s: float) -> Response:
        seconds = math.ceil(wait_s)
        message = (
            f"too many wrong tokens from this address: try again in {seconds} s "
            f"(at most {self.throttle.allowed} in {self.throttle.window_s:.0f} s)"
        )
        headers = {"Retry-After": str(seconds), **SECURITY_HEADERS}
        if kind == "api":
            return JSONResponse({"error": message}, status_code=429, headers=headers)
        if kind == "page":
            page = self.html("message.html", None, http_status=429, title="Wait", message=message)
            page.headers.update(headers)
            return page
        return PlainTextResponse(message + "\n", status_code=429, headers=headers)

    def _refuse(self, kind: str, status: int, message: str) -> Response:
        if kind == "api":
            return JSONResponse({"error": message}, status_code=status)
        return self.html("message.html", None, http_status=status, title="Refused", message=message)

    def _unauthenticated(self, request: Request, kind: str) -> Response:
        if kind == "page":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        headers = {"WWW-Authenticate": 'Bearer realm="syncd"'}
        if kind == "api":
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers=headers)
        return PlainTextResponse("unauthorized\n", status_code=401, headers=headers)

    def _set_session(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def html(
        self, template: str, who: Principal | None, *, http_status: int = 200, **data: Any
    ) -> HTMLResponse:
        body = self.env.get_template(template).render(
            who=who, mode=self.ctx.mode if self.ctx else "ops", **data
        )
        return HTMLResponse(body, status_code=http_status)

    @property
    def c(self) -> views.ConsoleContext:
        assert self.ctx is not None
        return self.ctx

    # -- ops routes ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        check = self.handlers.healthz()
        return self._check(request, check.ok, check.reasons)

    async def readyz(self, request: Request, who: Principal) -> Response:
        check = await self.handlers.readyz()
        return self._check(request, check.ok, check.reasons)

    def _check(self, request: Request, ok: bool, reasons: dict[str, Any]) -> Response:
        body = json.dumps({"ok": ok, **reasons}, default=str) + "\n"
        if request.method == "HEAD":
            body = ""
        return Response(body, status_code=200 if ok else 503, media_type="application/json")

    async def metrics(self, request: Request, who: Principal) -> Response:
        text = await self.handlers.metrics()
        return Response(
            "" if request.method == "HEAD" else text,
            headers={"Content-Type": CONTENT_TYPE},
        )

    # -- sign in --------------------------------------------------------------------------------

    def _login_form(
        self, request: Request, nxt: str, *, status: int = 200, error: str | None = None
    ) -> Response:
        """The sign-in form with a fresh nonce (its cookie is the form's CSRF check)."""
        nonce = secrets.token_urlsafe(16)
        response = self.html(
            "login.html", None, http_status=status, nonce=nonce, next=nxt, error=error
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=600,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    async def login_page(self, request: Request) -> Response:
        return self._login_form(request, _safe_next(request.query_params.get("next", "/")))

    async def login(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except ValueError:
            return PlainTextResponse("bad request\n", status_code=400)
        nonce = request.cookies.get(LOGIN_COOKIE)
        presented = _first(form, "csrf")
        if not nonce or not presented or not secrets.compare_digest(nonce, presented):
            return self._refuse("page", 403, "refused: the sign-in form expired; reload it")
        nxt = _safe_next(_first(form, "next") or "/")
        wait = self.throttle.wait_s(_address(request))
        if wait is not None:  # the token is not even compared: guessing must not go on
            seconds = math.ceil(wait)
            error = f"Too many wrong tokens from this address: try again in {seconds} s."
            throttled = self._login_form(request, nxt, status=429, error=error)
            throttled.headers["Retry-After"] = str(seconds)
            return throttled
        role = self.auth.role_of_token(_first(form, "token") or "")
        if role is None:
            log.warning("console_sign_in_refused")
            self._refused(request)
            return self._login_form(request, nxt, status=401, error="Wrong token.")
        log.info("console_signed_in", role=role.value)
        response: Response = RedirectResponse(nxt, status_code=303)
        self._set_session(request, response, self.auth.new_session(role))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def logout(self, request: Request, who: Principal) -> Response:
        response = RedirectResponse("/login" if self.auth.required else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found\n", status_code=404)
        data = resources.files("syncd.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    # -- pages ------------------------------------------------------------------------------------

    async def overview(self, request: Request, who: Principal) -> Response:
        data = await views.overview(self.c)
        return self.html("overview.html", who, nav="overview", **data)

    async def errors(self, request: Request, who: Principal) -> Response:
        code = request.query_params.get("code")
        page = _int(request.query_params.get("page"), 0)
        data = await views.errors_page(self.c, code, page)
        return self.html("errors.html", who, nav="errors", **data)

    async def errors_export(self, request: Request, who: Principal) -> Response:
        code = request.query_params.get("code")
        rows = await views.error_rows(self.c, code)
        fmt = request.path_params["fmt"]
        name = f"syncd-errors{'-' + _slug(code) if code else ''}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            return Response(views.rows_csv(rows), media_type="text/csv", headers=disposition)
        return JSONResponse(rows, headers=disposition)

    async def api_errors(self, request: Request, who: Principal) -> Response:
        code = request.query_params.get("code")
        if code is None:
            data = await views.errors_page(self.c, None, 0)
            return JSONResponse(
                {
                    "total": data["total"],
                    "groups": [_group(g) for g in data["groups"]],
                    "revived": data["revived_total"],
                }
            )
        return JSONResponse({"code": code, "items": await views.error_rows(self.c, code)})

    async def retry(self, request: Request, who: Principal) -> Response:
        form: dict[str, list[str]] = request.state.form
        code = _first(form, "code") or None
        ids = [int(x) for x in form.get("id", []) if x.isdigit()]
        if code is None and not ids:
            return self._refuse(
                _kind(request), 400, "nothing to retry: choose a group or select items"
            )
        revived = await views.retry_errors(self.c, code=code, ids=ids, who=who.who)
        log.info("console_retry", who=who.who, items=len(revived), code=code)
        if _kind(request) == "api":
            return JSONResponse({"retried": revived})
        back = f"/errors?code={quote(code)}" if code else "/errors"
        return RedirectResponse(f"{back}{'&' if code else '?'}retried={len(revived)}", 303)

    async def prospects(self, request: Request, who: Principal) -> Response:
        text = (request.query_params.get("q") or "").strip()
        found = await views.search(self.c, text) if text else []
        if len(found) == 1:
            return RedirectResponse(f"/prospects/{found[0]}", status_code=303)
        return self.html("search.html", who, nav="prospects", q=text, found=found)

    async def prospect(self, request: Request, who: Principal) -> Response:
        pid = _int(request.path_params["pid"], -1)
        data = await views.prospect(self.c, pid) if pid >= 0 else None
        if data is None:
            return self.html(
                "message.html",
                who,
                http_status=404,
                nav="prospects",
                title="Not found",
                message=f"The store has no link, queue item or history for prospect {pid}.",
            )
        queued = request.query_params.get("queued") == "1"
        return self.html("prospect.html", who, nav="prospects", p=data, queued=queued)

    async def api_prospect(self, request: Request, who: Principal) -> Response:
        pid = _int(request.path_params["pid"], -1)
        data = await views.prospect(self.c, pid) if pid >= 0 else None
        if data is None:
            return JSONResponse({"error": f"unknown prospect {pid}"}, status_code=404)
        return JSONResponse(data)

    async def sync_now(self, request: Request, who: Principal) -> Response:
        pid = _int(request.path_params["pid"], -1)
        if pid < 0 or await views.prospect(self.c, pid) is None:
            return self._refuse(_kind(request), 404, f"unknown prospect {pid}")
        await views.sync_now(self.c, pid, who=who.who)
        log.info("console_sync_now", who=who.who, prospect_id=pid)
        if _kind(request) == "api":
            return JSONResponse({"queued": pid})
        return RedirectResponse(f"/prospects/{pid}?queued=1", status_code=303)

    async def control(self, request: Request, who: Principal) -> Response:
        side, verb = request.path_params["side"], request.path_params["verb"]
        if side not in SIDES or verb not in ("pause", "resume"):
            return self._refuse(_kind(request), 404, "no such side or action")
        changed = await views.set_paused(self.c, side, verb == "pause", who=who.who)
        log.info("console_" + verb, who=who.who, side=side, changed=changed)
        if _kind(request) == "api":
            return JSONResponse({"side": side, "paused": verb == "pause", "changed": changed})
        return RedirectResponse("/", status_code=303)

    async def activity(self, request: Request, who: Principal) -> Response:
        return self.html("activity.html", who, nav="activity", **await views.activity(self.c))

    async def api_activity(self, request: Request, who: Principal) -> Response:
        return JSONResponse(await views.activity(self.c))

    async def settings(self, request: Request, who: Principal) -> Response:
        return self.html("settings.html", who, nav="settings", **views.settings_view(self.c))

    async def api_status(self, request: Request, who: Principal) -> Response:
        return JSONResponse(await views.status(self.c))

    # -- routing --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        g = self.guard
        get = ["GET", "HEAD"]
        ops = [
            Route("/healthz", self.healthz, methods=get),
            Route("/readyz", g(self.readyz, kind="ops"), methods=get),
            Route("/metrics", g(self.metrics, kind="ops"), methods=get),
        ]
        if self.ctx is None:
            return ops
        post = ["POST"]
        return [
            *ops,
            Route("/", g(self.overview), methods=get),
            Route("/errors", g(self.errors), methods=get),
            Route("/errors/export.{fmt:str}", g(self._export_guard()), methods=get),
            Route("/errors/retry", g(self.retry, action=True), methods=post),
            Route("/prospects", g(self.prospects), methods=get),
            Route("/prospects/{pid}", g(self.prospect), methods=get),
            Route("/prospects/{pid}/sync", g(self.sync_now, action=True), methods=post),
            Route("/control/{side}/{verb}", g(self.control, action=True), methods=post),
            Route("/activity", g(self.activity), methods=get),
            Route("/settings", g(self.settings), methods=get),
            Route("/login", self.login_page, methods=get),
            Route("/login", self.login, methods=post),
            Route("/logout", g(self.logout, action=True), methods=post),
            Route("/static/{name}", self.static, methods=get),
            Route("/api/status", g(self.api_status, kind="api"), methods=get),
            Route("/api/errors", g(self.api_errors, kind="api"), methods=get),
            Route("/api/errors/retry", g(self.retry, kind="api", action=True), methods=post),
            Route("/api/prospects/{pid}", g(self.api_prospect, kind="api"), methods=get),
            Route(
                "/api/prospects/{pid}/sync", g(self.sync_now, kind="api", action=True), methods=post
            ),
            Route(
                "/api/control/{side}/{verb}", g(self.control, kind="api", action=True), methods=post
            ),
            Route("/api/activity", g(self.api_activity, kind="api"), methods=get),
        ]

    def _export_guard(self) -> Guarded:
        async def export(request: Request, who: Principal) -> Response:
            if request.path_params["fmt"] not in ("csv", "json"):
                return PlainTextResponse("not found\n", status_code=404)
            return await self.errors_export(request, who)

        return export


def _address(request: Request) -> str:
    """The client's address as the server sees it (a proxy's, behind one)."""
    return request.client.host if request.client is not None else "unknown"


def _kind(request: Request) -> str:
    return "api" if request.url.path.startswith("/api/") else "page"


def _int(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() and len(value) < 19 else default


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:60]


def _safe_next(target: str) -> str:
    """Only same-site paths: never redirect a signed-in browser to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _group(g: Any) -> dict[str, Any]:
    return {
        "code": g.code,
        "count": g.count,
        "message": g.message,
        "first_failed_at": g.first_failed_at.isoformat() if g.first_failed_at else None,
        "last_failed_at": g.last_failed_at.isoformat() if g.last_failed_at else None,
    }


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found\n", status_code=404)


async def _error(request: Request, exc: Exception) -> Response:
    log.warning("console_handler_failed", path=request.url.path, error=type(exc).__name__)
    return PlainTextResponse("internal error\n", status_code=500)


def build_app(ctx: views.ConsoleContext) -> Starlette:
    """The whole console for `ctx` (tokens from `ctx.settings.ops`)."""
    ops = ctx.settings.ops
    auth = Auth(
        ops.bearer_token.get_secret_value() if ops.bearer_token else None,
        ops.viewer_token.get_secret_value() if ops.viewer_token else None,
    )
    return _starlette(ConsoleApp(ctx, ctx.handlers, auth))


def ops_app(handlers: OpsHandlers, *, bearer_token: str | None) -> Starlette:
    """Only `/healthz`, `/readyz` and `/metrics` (no console)."""
    return _starlette(ConsoleApp(None, handlers, Auth(bearer_token, None)))


def _starlette(app: ConsoleApp) -> Starlette:
    return Starlette(
        routes=app.routes(),
        exception_handlers={404: _not_found, 500: _error, Exception: _error},
    )
