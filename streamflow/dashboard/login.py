"""The login form (token, and a name for the audit trail) and logout."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .security import AUTH_COOKIE, USER_COOKIE, cookie_path, csrf_ok, safe_next, session_value
from .web import config_of, render


async def login(request: Request) -> Response:
    config = config_of(request)
    target = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", {"next": target, "error": None})
    form = await request.form()
    token, name, csrf = form.get("token"), form.get("name"), form.get("csrf")
    target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
    if not csrf_ok(request, csrf if isinstance(csrf, str) else None):
        return render(request, "login.html", {
            "next": target, "error": "the form expired; try again"}, 403)
    if config.token is None or not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), config.token.encode()):
        return render(request, "login.html", {"next": target, "error": "wrong token"}, 401)
    root = str(request.scope.get("root_path") or "").rstrip("/")
    response = RedirectResponse(root + target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(AUTH_COOKIE, session_value(config.token), path=cookie_path(request),
                        httponly=True, samesite="strict", secure=secure)
    if isinstance(name, str) and name.strip():
        response.set_cookie(USER_COOKIE, name.strip()[:80], path=cookie_path(request),
                            httponly=True, samesite="strict", secure=secure)
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    csrf = form.get("csrf")
    if not csrf_ok(request, csrf if isinstance(csrf, str) else None):
        return render(request, "message.html", {"title": "Refused",
                                                "message": "stale form; reload"}, 403)
    root = str(request.scope.get("root_path") or "").rstrip("/")
    response = RedirectResponse(root + "/login", status_code=303)
    response.delete_cookie(AUTH_COOKIE, path=cookie_path(request))
    response.delete_cookie(USER_COOKIE, path=cookie_path(request))
    return response


routes = [
    Route("/login", login, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
]
