"""`--api-auth user:pass[,user2:pass2]`: HTTP Basic on every /sdapi/v1 route.

Gradio's login is a cookie on the UI and does not cover these routes, so the API checks for itself.
Every configured pair is compared in constant time (secrets.compare_digest on bytes) and all of
them are always compared, so neither the timing nor an early exit tells which part was wrong.
"""
from __future__ import annotations

import secrets
from typing import Annotated, Callable

from fastapi import Depends
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from webui.api.errors import ApiError

_basic = HTTPBasic(auto_error=False)


def credentials_match(pairs: list[tuple[str, str]], username: str, password: str) -> bool:
    user_b, pass_b = username.encode("utf-8"), password.encode("utf-8")
    ok = False
    for user, pw in pairs:
        user_ok = secrets.compare_digest(user_b, user.encode("utf-8"))
        pass_ok = secrets.compare_digest(pass_b, pw.encode("utf-8"))
        ok |= user_ok & pass_ok
    return ok


def basic_auth_dependency(pairs: list[tuple[str, str]]) -> Callable:
    """A FastAPI dependency that answers 401 with `WWW-Authenticate: Basic` unless a pair matches."""
    if not pairs:
        raise ValueError("basic_auth_dependency needs at least one user:password pair")

    def check(credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> str:
        if credentials is None or not credentials_match(pairs, credentials.username, credentials.password):
            raise ApiError(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})
        return credentials.username

    return check
