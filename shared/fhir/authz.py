"""Who is calling: function keys by default; App Service authentication (Easy Auth) when set.

With ``AUTH_MODE=easyauth`` the platform authenticates the caller and passes the principal
in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON of its claims); the caller must hold one of the
``CARE_ROLES`` app roles. That header is trusted only in that mode: anyone can send it to a
function-key endpoint, so there it is ignored. And only with a sign that the platform put it
there: App Service injects ``WEBSITE_AUTH_ENABLED=True`` into the app's environment when its
authentication is on (and then strips any ``X-MS-CLIENT-PRINCIPAL`` a caller sends). In
easyauth mode without it, the functions are anonymous and the header could be forged, so
every request is refused (503, the site administrator told) instead of trusted.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from shared.fhir.operation_outcome import FhirError
from shared.platform.settings import PLATFORM_AUTH_FLAG, Settings, SettingsError

PRINCIPAL_HEADER = "x-ms-client-principal"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
NAME_CLAIMS = (
    "preferred_username",
    "name",
    "upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
)
FUNCTION_KEY = "function key"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def http_auth_level(env: Mapping[str, str] | None) -> str:
    """The auth level the HTTP functions are registered with (fixed when the host indexes),
    from the app settings ``env`` (the process environment when None).

    Function keys unless Easy Auth stands in front; then the platform authenticates and the
    roles are checked here, so the functions themselves are anonymous.
    """
    from shared.platform.settings import auth_mode

    try:
        return "ANONYMOUS" if auth_mode(env) == "easyauth" else "FUNCTION"
    except SettingsError:
        return "FUNCTION"  # the safer level; Services.settings reports the bad value at run time


# The app role that may read the model's report (GET api/model): aggregates, no stay.
DATA_SCIENTIST_ROLE = "DataScientist"
# The app role that sees the network's capacity (GET api/capacity): aggregates, no stay.
# The care line manager (CARE_ROLES) sees it too, and the patients of a facility besides.
CMIO_ROLE = "CMIO"
# The app role that reads the audit trail (GET api/audit): ids, outcomes and reasons.
AUDITOR_ROLE = "Auditor"


def authorize(
    headers: Mapping[str, str], settings: Settings, roles: frozenset[str] | None = None
) -> Principal:
    """The caller, if it holds one of ``roles`` (default: ``CARE_ROLES``)."""
    return require(caller(headers, settings), settings, roles)


# Who a refused caller was, when no principal could be read: the audit trail says so.
ANONYMOUS = "anonymous"


def caller(headers: Mapping[str, str], settings: Settings) -> Principal:
    """Who is calling, whatever their roles: the audit trail names a refused caller too."""
    if settings.auth_mode != "easyauth":
        return Principal(FUNCTION_KEY, frozenset())
    if not settings.platform_auth_enabled:
        raise SettingsError(
            "AUTH_MODE",
            "easyauth, but App Service authentication is not enabled in front of the app "
            f"({PLATFORM_AUTH_FLAG} is not True): the principal header cannot be trusted",
        )
    raw = headers.get(PRINCIPAL_HEADER) or headers.get(PRINCIPAL_HEADER.upper())
    if not raw:
        raise FhirError.one(
            401,
            "login",
            "sign in: the request carries no authenticated principal",
            **{"WWW-Authenticate": "Bearer"},
        )
    return _decode(raw)


def require(
    principal: Principal, settings: Settings, roles: frozenset[str] | None = None
) -> Principal:
    """``principal``, if it holds one of ``roles`` (default: ``CARE_ROLES``); a function key
    holds them all (the key is the credential where Easy Auth is off)."""
    allowed = settings.care_roles if roles is None else roles
    if settings.auth_mode != "easyauth" or principal.roles & allowed:
        return principal
    raise FhirError.one(
        403,
        "forbidden",
        f"the caller holds none of the app roles allowed here ({', '.join(sorted(allowed))})",
    )


def _decode(raw: str) -> Principal:
    try:
        data = json.loads(base64.b64decode(raw, validate=False))
        claims = data.get("claims") or []
        role_type = data.get("role_typ")
        name_type = data.get("name_typ")
        roles = frozenset(
            str(c["val"]) for c in claims if c.get("typ") in (*ROLE_CLAIMS, role_type)
        )
        names = [str(c["val"]) for c in claims if c.get("typ") in (name_type, *NAME_CLAIMS)]
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
        raise FhirError.one(
            401, "login", "the authenticated principal header is malformed"
        ) from None
    return Principal((names[0] if names else "unnamed principal")[:256], roles)
