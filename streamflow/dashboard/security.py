"""Token login, CSRF tokens and response headers.

With a token configured every request needs the session cookie set by the login form, or an
``Authorization: Bearer <token>`` header. Actions are POST forms carrying a CSRF token that
must equal the ``sfdash_csrf`` cookie (double submit; cookies are ``SameSite=Strict``), and a
cross-site ``Origin`` is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUTH_COOKIE = "sfdash_auth"
CSRF_COOKIE = "sfdash_csrf"
USER_COOKIE = "sfdash_user"
OPEN_PATHS = ("/login", "/static/")
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def session_value(token: str) -> str:
    """The cookie value proving a login with ``token`` (the token itself never is a cookie)."""
    return hmac.new(token.encode(), b"streamflow-dashboard-session", hashlib.sha256).hexdigest()


def authorized(token: str | None, headers: Headers, cookies: dict[str, str]) -> bool:
    """Whether a request carries the token (header) or a session cookie made from it."""
    if token is None:
        return True
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), token.encode()):
        return True
    return hmac.compare_digest(cookies.get(AUTH_COOKIE, "").encode(),
                               session_value(token).encode())


def cookie_path(request: Request) -> str:
    """The path the dashboard is mounted at, so its cookies stay within it."""
    root = str(request.scope.get("root_path") or "")
    return root + "/" if not root.endswith("/") else root


def csrf_token(request: Request) -> str:
    """The request's CSRF token: from its cookie, else a new one (set by ``finish``)."""
    token = getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = secrets.token_urlsafe(24)
    request.state.csrf = token
    return str(token)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Whether a POST carries the CSRF cookie's value and comes from this site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        return False
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted and hmac.compare_digest(cookie.encode(), submitted.encode()))


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def finish(request: Request, response: Response) -> Response:
    """Set the CSRF cookie if this request created the token."""
    token = getattr(request.state, "csrf", None)
    if token and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, path=cookie_path(request), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
    return response


class AuthGate:
    """ASGI middleware: refuses requests without the token; adds the security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope)
        root = str(scope.get("root_path") or "").rstrip("/")
        path = scope["path"][len(root):] if root and scope["path"].startswith(root) \
            else scope["path"]
        if self.token is None or path.startswith(OPEN_PATHS) or authorized(
                self.token, request.headers, request.cookies):
            await self.app(scope, receive, send_with_headers)
            return
        response: Response
        if path.startswith("/api/") or request.method != "GET":
            response = JSONResponse({"error": "token required"}, status_code=401)
        else:
            response = RedirectResponse(f"{root}/login?next={quote(path)}", status_code=303)
        await response(scope, receive, send_with_headers)
