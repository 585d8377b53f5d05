"""`--api-auth user:pass[,user2:pass2]`: HTTP Basic on every /sdapi/v1 route (and the API docs).

Gradio's login is a cookie on the UI and does not cover these routes, so the API checks for itself,
as an ASGI middleware: before routing, before the body is read or parsed, so a request without
credentials gets 401 whatever it carries (never a 422 that would tell it about the API). Every
configured pair is compared in constant time (secrets.compare_digest on bytes) and all of them are
always compared, so neither the timing nor an early exit tells which part was wrong.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets

PROTECTED = ("/sdapi/", "/docs", "/openapi.json", "/redoc")


def credentials_match(pairs: list[tuple[str, str]], username: str, password: str) -> bool:
    user_b, pass_b = username.encode("utf-8"), password.encode("utf-8")
    ok = False
    for user, pw in pairs:
        user_ok = secrets.compare_digest(user_b, user.encode("utf-8"))
        pass_ok = secrets.compare_digest(pass_b, pw.encode("utf-8"))
        ok |= user_ok & pass_ok
    return ok


def authorized(pairs: list[tuple[str, str]], header: bytes | None) -> bool:
    """True when an `Authorization: Basic ...` header names a configured pair."""
    scheme, _, token = (header or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return False
    return bool(sep) and credentials_match(pairs, user, password)


class BasicAuthMiddleware:
    """Answers 401 with `WWW-Authenticate: Basic` for a protected path unless a pair matches."""

    def __init__(self, app, pairs: list[tuple[str, str]], prefixes: tuple[str, ...] = PROTECTED):
        if not pairs:
            raise ValueError("BasicAuthMiddleware needs at least one user:password pair")
        self.app, self.pairs, self.prefixes = app, pairs, prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            header = dict(scope.get("headers") or []).get(b"authorization")
            if not authorized(self.pairs, header):
                body = json.dumps({"error": "Unauthorized", "detail": "Incorrect username or password"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Basic"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
