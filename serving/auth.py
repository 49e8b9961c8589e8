"""API keys by role, checked on every protected route; keys travel in the ``X-API-Key``
header only (a key in a URL ends up in logs and browser histories, so a query parameter is
never read).

| role        | routes                                               | accepts            |
|-------------|------------------------------------------------------|--------------------|
| ``write``   | ``POST /v1/events``, catalog writes                  | write or admin key |
| ``read``    | experiments, their results, ``/metrics``             | read or admin key  |
| ``dashboard`` | the dashboard: ``/dashboard``, ``/v1/dashboard/*`` | dashboard or admin |
| ``admin``   | reload, erasure; experiment salts in the answers     | admin key          |

A role with no key configured and no admin key answers 503 (closed by default, never open);
a missing or wrong key is a 401. Keys are compared in constant time.

The dashboard's routes also take the key as the password of HTTP Basic (RFC 7617; the user
name is not checked), because that is what a browser can send by itself: the page answers 401
with ``WWW-Authenticate: Basic``, the browser asks for the key once and sends it with every
request of the page to the same origin, and the key never appears in a URL, a cookie or the
page's script. Scripts keep using ``X-API-Key``.

A route declares its role with a dependency, e.g. ``dependencies=[Depends(require_read)]``, or
takes the matched key's role as a parameter (``role: ReadRole``) to show more to the admin.
The OpenAPI document lists one security scheme per key (``writeKey``, ``readKey``,
``dashboardKey``, ``adminKey``, all the same header) plus ``dashboardBasic`` (HTTP Basic), and
each operation the schemes it accepts.
"""

from __future__ import annotations

import binascii
import secrets
from base64 import b64decode
from typing import Annotated

from fastapi import Depends, HTTPException, Security, status
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from serving.deps import StateDep

KEY_HEADER = "X-API-Key"
ACCEPTS: dict[str, tuple[str, ...]] = {
    "write": ("write", "admin"), "read": ("read", "admin"),
    "dashboard": ("dashboard", "admin"), "admin": ("admin",),
}
_PURPOSE = {
    "write": "sends events and catalog changes (a shop's back end)",
    "read": "reads experiment definitions, results and metrics",
    "dashboard": "the read-only dashboard",
    "admin": "reloads bundles, erases users, sees experiment salts; accepted everywhere",
}
SCHEMES = {role: APIKeyHeader(name=KEY_HEADER, scheme_name=f"{role}Key", auto_error=False,
                              description=f"The {role} key: {_PURPOSE[role]}.")
           for role in ACCEPTS}
DASHBOARD_REALM = "recsys dashboard"
# what a 401 of the dashboard says, so that a browser asks for the key
BASIC_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{DASHBOARD_REALM}", charset="UTF-8"'}


class KeyAsBasicPassword(HTTPBasic):
    """HTTP Basic credentials or None: absent, another scheme, or malformed (the header key, or
    a 401, decides then). Decoded as UTF-8 (RFC 7617 ``charset="UTF-8"``)."""

    async def __call__(self, request: HTTPConnection  # type: ignore[override]
                       ) -> HTTPBasicCredentials | None:
        scheme, param = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "basic":
            return None
        try:
            decoded = b64decode(param, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return None
        username, colon, password = decoded.partition(":")
        return HTTPBasicCredentials(username=username, password=password) if colon else None


DASHBOARD_BASIC = KeyAsBasicPassword(
    scheme_name="dashboardBasic", realm=DASHBOARD_REALM, auto_error=False,
    description="The dashboard (or admin) key as the password of HTTP Basic; any user name. "
                "What a browser sends after asking once.")


def match_role(keys: dict[str, str], role: str, presented: str | None,
               env_names: dict[str, str] | None = None) -> str:
    """The role of the key ``presented`` among those ``role`` accepts; HTTPException 503 when
    none of them is configured, 401 when the key is missing or wrong."""
    accepted = [r for r in ACCEPTS[role] if r in keys]
    if not accepted:
        names = [(env_names or {}).get(r, f"the {r} key") for r in ACCEPTS[role]]
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the {role} endpoints are disabled: no key is configured for them "
                            f"(set {' or '.join(names)} on the server)")
    if presented:
        given = presented.encode("utf-8", "surrogatepass")
        for r in accepted:   # every comparison in constant time
            if secrets.compare_digest(given, keys[r].encode("utf-8")):
                return r
    raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                        f"missing or wrong {KEY_HEADER} header (this endpoint takes the "
                        f"{' or '.join(ACCEPTS[role])} key)")


async def require_write(state: StateDep, key: Annotated[str | None, Security(SCHEMES["write"])],
                        _a: Annotated[str | None, Security(SCHEMES["admin"])]) -> str:
    return match_role(state.keys, "write", key, state.key_env_names)


async def require_read(state: StateDep, key: Annotated[str | None, Security(SCHEMES["read"])],
                       _a: Annotated[str | None, Security(SCHEMES["admin"])]) -> str:
    return match_role(state.keys, "read", key, state.key_env_names)


async def require_dashboard(
        state: StateDep, key: Annotated[str | None, Security(SCHEMES["dashboard"])],
        _a: Annotated[str | None, Security(SCHEMES["admin"])],
        basic: Annotated[HTTPBasicCredentials | None, Security(DASHBOARD_BASIC)]) -> str:
    """The dashboard or admin key, from ``X-API-Key`` or as the HTTP Basic password; a 401
    carries the Basic challenge, so a browser opening the page asks for the key."""
    presented = key or (basic.password if basic is not None else None)
    try:
        return match_role(state.keys, "dashboard", presented, state.key_env_names)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            f"missing or wrong key (the dashboard takes the dashboard or admin "
                            f"key, in the {KEY_HEADER} header or as the HTTP Basic password)",
                            headers=BASIC_CHALLENGE) from None


async def require_admin(state: StateDep,
                        key: Annotated[str | None, Security(SCHEMES["admin"])]) -> str:
    return match_role(state.keys, "admin", key, state.key_env_names)


WriteRole = Annotated[str, Depends(require_write)]
ReadRole = Annotated[str, Depends(require_read)]
DashboardRole = Annotated[str, Depends(require_dashboard)]
AdminRole = Annotated[str, Depends(require_admin)]
