"""Every app setting the ingest functions read, read and validated in one place, once per worker.

A bad value raises :class:`SettingsError` naming the setting, so the site administrator knows
which application setting to fix. Secrets (the SQL connection string) are not held here in
plain sight of ``repr``: see :mod:`shared.platform.secrets`.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from shared.records.tags import EphiTags

# Set by App Service itself (read-only for the app) when its authentication is enabled: the
# platform's word, not a setting an administrator writes (infra/ never sets it).
PLATFORM_AUTH_FLAG = "WEBSITE_AUTH_ENABLED"


class SettingsError(Exception):
    """An app setting is missing or malformed; the message names the setting, never its value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"app setting {setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    uploads_container: str
    storage_connection: str | None = field(repr=False)
    storage_account_url: str | None
    sql_connection_string: str | None = field(repr=False)
    tags: EphiTags
    import_batch_size: int
    progress_interval_seconds: float
    storage_retries: int
    auth_mode: AuthMode
    care_roles: frozenset[str]
    max_request_bytes: int
    facility_ids: dict[str, str]
    default_facility_id: str | None
    key_vault_url: str | None
    sql_connection_secret_name: str
    secret_cache_seconds: float
    key_vault_verify_challenge_resource: bool
    los_model_url: str | None = None
    los_model_refresh_seconds: float = 300.0
    queue_service_url: str | None = None
    import_range_bytes: int = 32 * 1024 * 1024
    retrain_schedule: str = "0 0 3 * * 0"
    retrain_min_stays: int = 1000
    retrain_max_stays: int = 1_000_000
    retrain_margin: float = 0.0
    live_mae_factor: float = 1.5
    live_accuracy_days: int = 90
    capacity_long_stay_days: int = 7
    # App Service's own flag that its authentication stands in front (PLATFORM_AUTH_FLAG).
    platform_auth_enabled: bool = False


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, "must be a whole number") from None
    if not lo <= value <= hi:
        raise SettingsError(name, f"must be between {lo} and {hi}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, "must be a number") from None
    if not lo <= value <= hi:
        raise SettingsError(name, f"must be between {lo:g} and {hi:g}")
    return value


def _container_name(env: Mapping[str, str]) -> str:
    name = _text(env, "PATIENT_UPLOADS_CONTAINER", "patient-uploads")
    assert name is not None
    # Azure's container naming rule: 3-63 lowercase letters, digits and single hyphens.
    ok = (
        3 <= len(name) <= 63
        and all(c.islower() or c.isdigit() or c == "-" for c in name)
        and name[0] != "-"
        and name[-1] != "-"
        and "--" not in name
    )
    if not ok:
        raise SettingsError(
            "PATIENT_UPLOADS_CONTAINER",
            "must be a valid container name (3-63 lowercase letters, digits, single hyphens)",
        )
    return name


def _account_url(env: Mapping[str, str]) -> str | None:
    return _endpoint(
        env,
        "PATIENT_STORAGE_ACCOUNT_URL",
        "the blob endpoint, e.g. https://<account>.blob.core.windows.net",
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    storage_connection = _text(env, "PATIENT_STORAGE_CONNECTION")
    storage_account_url = _account_url(env)
    return Settings(
        uploads_container=_container_name(env),
        storage_connection=storage_connection,
        storage_account_url=storage_account_url,
        sql_connection_string=_text(env, "SQL_CONNECTION_STRING"),
        tags=EphiTags(
            data_profile=_text(env, "EPHI_DATA_PROFILE", "ePHI") or "",
            owner=_required_owner(env),
            environment=_text(env, "EPHI_ENVIRONMENT", "Pilot") or "",
            department=_text(env, "EPHI_DEPARTMENT", "Global Ecosystem") or "",
        ),
        import_batch_size=_int(env, "IMPORT_BATCH_SIZE", 5000, 1, 100_000),
        progress_interval_seconds=_float(env, "IMPORT_PROGRESS_SECONDS", 10.0, 0.0, 3600.0),
        storage_retries=_int(env, "STORAGE_RETRY_TOTAL", 3, 0, 10),
        auth_mode=auth_mode(env),
        care_roles=frozenset(
            r.strip()
            for r in (_text(env, "CARE_ROLES", "CareLineManager") or "").split(",")
            if r.strip()
        ),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 8 * 1024 * 1024, 1024, 100 * 1024 * 1024),
        facility_ids=_facility_ids(env),
        default_facility_id=_facility(env, "DEFAULT_FACILITY_ID"),
        key_vault_url=_vault_url(env),
        sql_connection_secret_name=_secret_name(env),
        secret_cache_seconds=_float(env, "SECRET_CACHE_SECONDS", 300.0, 0.0, 86400.0),
        key_vault_verify_challenge_resource=_bool(env, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", True),
        los_model_url=_model_url(env),
        los_model_refresh_seconds=_float(env, "LOS_MODEL_REFRESH_SECONDS", 300.0, 1.0, 86400.0),
        queue_service_url=_endpoint(
            env,
            QUEUE_SERVICE_URI,
            "the queue endpoint, e.g. https://<account>.queue.core.windows.net",
        ),
        import_range_bytes=_int(
            env, "IMPORT_RANGE_BYTES", 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024
        ),
        retrain_schedule=_schedule(env),
        retrain_min_stays=_int(env, "RETRAIN_MIN_STAYS", 1000, 100, 100_000_000),
        retrain_max_stays=_int(env, "RETRAIN_MAX_STAYS", 1_000_000, 1000, 100_000_000),
        retrain_margin=_float(env, "RETRAIN_MARGIN", 0.0, 0.0, 1.0),
        live_mae_factor=_float(env, "LIVE_MAE_FACTOR", 1.5, 1.0, 10.0),
        live_accuracy_days=_int(env, "LIVE_ACCURACY_DAYS", 90, 1, 3650),
        capacity_long_stay_days=_int(env, "CAPACITY_LONG_STAY_DAYS", 7, 1, 365),
        platform_auth_enabled=(_text(env, PLATFORM_AUTH_FLAG) or "").lower() == "true",
    )


def environment(
    local_settings: Path | None = None, *, env: Mapping[str, str] | None = None
) -> Mapping[str, str]:
    """The settings a command line reads: its environment ``env`` (the process's when None),
    over a ``local.settings.json``'s ``Values`` when one is given (the environment wins)."""
    env = os.environ if env is None else env
    if local_settings is None:
        return env
    try:
        values = json.loads(local_settings.read_text(encoding="utf-8")).get("Values", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise SettingsError(
            str(local_settings), f"cannot be read as a local.settings.json ({exc})"
        ) from None
    return {**{k: str(v) for k, v in values.items()}, **env}


def _schedule(env: Mapping[str, str]) -> str:
    """retrain_model's timer (the host reads it too, as %RETRAIN_SCHEDULE%): NCRONTAB's six
    fields, seconds first."""
    value = _text(env, "RETRAIN_SCHEDULE", "0 0 3 * * 0")
    assert value is not None
    if len(value.split()) != 6:
        raise SettingsError(
            "RETRAIN_SCHEDULE",
            "must be an NCRONTAB expression of six fields (second minute hour day month "
            "weekday), e.g. 0 0 3 * * 0 for Sundays at 03:00 UTC",
        )
    return value


# The queue trigger's identity-based connection (the Functions host reads the same setting):
# in Azure the queue endpoint, locally the PATIENT_STORAGE_CONNECTION connection string.
QUEUE_SERVICE_URI = "PATIENT_STORAGE_CONNECTION__queueServiceUri"


def _endpoint(env: Mapping[str, str], name: str, example: str) -> str | None:
    url = _text(env, name)
    if url is None:
        return None
    if not url.startswith(("https://", "http://")):
        raise SettingsError(name, f"must be {example}")
    return url.rstrip("/")


def _model_url(env: Mapping[str, str]) -> str | None:
    """A blob URL on the storage account (read with the managed identity) or a local path."""
    value = _text(env, "LOS_MODEL_URL")
    if value is None:
        return None
    scheme = urllib.parse.urlsplit(value).scheme.lower()
    if scheme in ("http", "https") or not scheme or len(scheme) == 1:  # C:\ is a path
        return value
    raise SettingsError(
        "LOS_MODEL_URL",
        "must be an https:// blob URL on the storage account or a local file path",
    )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (_text(env, name) or "").lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise SettingsError(name, "must be true or false")


def _vault_url(env: Mapping[str, str]) -> str | None:
    url = _text(env, "KEY_VAULT_URL")
    if url is not None and not url.startswith("https://"):
        raise SettingsError("KEY_VAULT_URL", "must be the vault's https:// URL")
    return url.rstrip("/") if url else None


def _secret_name(env: Mapping[str, str]) -> str:
    name = _text(env, "SQL_CONNECTION_SECRET_NAME", "patient-db-connection-string") or ""
    # Key Vault's rule: 1-127 letters, digits and dashes.
    if not (1 <= len(name) <= 127 and all(c.isascii() and (c.isalnum() or c == "-") for c in name)):
        raise SettingsError(
            "SQL_CONNECTION_SECRET_NAME", "must be 1-127 letters, digits and dashes"
        )
    return name


AuthMode = Literal["function", "easyauth"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)


def auth_mode(env: Mapping[str, str] | None = None) -> AuthMode:
    """``AUTH_MODE``; read on its own too, because the HTTP auth level is fixed at indexing."""
    env = os.environ if env is None else env
    mode = (_text(env, "AUTH_MODE", "function") or "").lower()
    for known in AUTH_MODES:
        if mode == known:
            return known
    raise SettingsError("AUTH_MODE", "must be function or easyauth")


def _facility_code(value: str, name: str) -> str:
    """A facility id as the rule book stores it (``facid``'s rule), or SettingsError: a
    setting the rules would refuse must fail at start-up, not on every admission."""
    # Imported here: the rule book brings the schema (SQLAlchemy), which indexing at cold
    # start should not pay for; settings are read on first use.
    from shared.records.rules import RULE, Invalid

    rule = RULE["facid"]
    try:
        return str(rule.check(value))
    except Invalid:
        raise SettingsError(name, rule.malformed) from None


def _facility(env: Mapping[str, str], name: str) -> str | None:
    value = _text(env, name)
    return _facility_code(value, name) if value else None


def _facility_ids(env: Mapping[str, str]) -> dict[str, str]:
    raw = _text(env, "FACILITY_IDS")
    if raw is None:
        return {}
    try:
        mapping = json.loads(raw)
    except ValueError:
        raise SettingsError("FACILITY_IDS", "must be a JSON object") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise SettingsError(
            "FACILITY_IDS",
            'must map Organization ids, identifiers or names to facility ids, e.g. {"org-1": "A"}',
        )
    return {k: _facility_code(v, "FACILITY_IDS") for k, v in mapping.items()}


def _required_owner(env: Mapping[str, str]) -> str:
    owner = _text(env, "EPHI_OWNER")
    if owner is None:
        raise SettingsError(
            "EPHI_OWNER", "set it to the site administrator's UPN (owner tag of every ePHI row)"
        )
    if len(owner) > 256:
        raise SettingsError("EPHI_OWNER", "must be at most 256 characters")
    return owner
