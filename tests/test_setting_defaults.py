"""One default per setting: what shared/platform/settings.py does when a setting is absent
is what local.settings.sample.json (from which docs/site-administrator.md's settings table
is generated) and infra/ say."""

from __future__ import annotations

import json
import re

import pytest

from shared.platform.settings import Settings, load_settings
from tests.conftest import PROJECT_ROOT
from tests.test_infra import app_settings

# Each setting with a default, and how to read that default back from Settings.
DEFAULTS = {
    "PATIENT_UPLOADS_CONTAINER": lambda s: s.uploads_container,
    "SQL_CONNECTION_SECRET_NAME": lambda s: s.sql_connection_secret_name,
    "SECRET_CACHE_SECONDS": lambda s: s.secret_cache_seconds,
    "IMPORT_BATCH_SIZE": lambda s: s.import_batch_size,
    "IMPORT_PROGRESS_SECONDS": lambda s: s.progress_interval_seconds,
    "STORAGE_RETRY_TOTAL": lambda s: s.storage_retries,
    "AUTH_MODE": lambda s: s.auth_mode,
    "CARE_ROLES": lambda s: ",".join(sorted(s.care_roles)),
    "MAX_REQUEST_BYTES": lambda s: s.max_request_bytes,
    "LOS_MODEL_REFRESH_SECONDS": lambda s: s.los_model_refresh_seconds,
    "EPHI_DATA_PROFILE": lambda s: s.tags.data_profile,
    "EPHI_ENVIRONMENT": lambda s: s.tags.environment,
    "EPHI_DEPARTMENT": lambda s: s.tags.department,
    "CAPACITY_LONG_STAY_DAYS": lambda s: s.capacity_long_stay_days,
}


def text(value: object) -> str:
    """A default as documents write it: 300.0 is 300."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.fixture(scope="module")
def code_defaults() -> dict[str, str]:
    settings: Settings = load_settings(
        {"EPHI_OWNER": "owner@example", "PATIENT_STORAGE_ACCOUNT_URL": "https://a.example"}
    )
    return {name: text(read(settings)) for name, read in DEFAULTS.items()}


def test_the_local_sample_describes_the_code_defaults(code_defaults):
    sample = json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())
    for name, default in code_defaults.items():
        described = sample["SettingDescriptions"].get(name, "")
        stated = re.search(r"Default (.+?)(?: \(.*\))?[.:](?:\s|$)", described)
        # Every default is stated: the docs' settings table is generated from these.
        assert stated and stated.group(1) == default, name
        if name in sample["Values"]:
            assert sample["Values"][name] in (default, ""), name


# Where Azure deliberately runs with another value than the code's default, and why.
AZURE_DIFFERS: dict[str, str] = {}


def deployed_value(value: object) -> str | None:
    """An app setting's value as deployed: a literal, or a module parameter followed to
    main.bicep's parameter default or variable; None for an expression."""
    from tests.test_infra import bicep

    if not isinstance(value, str):
        return None
    if value not in bicep("modules/functionapp.bicep")["parameters"]:
        return value  # a literal
    main = bicep("main.bicep")
    if value in main["variables"]:
        return str(main["variables"][value]["value"])
    default = main["parameters"].get(value, {}).get("default")
    return None if default is None else str(default)


def test_infra_sets_the_code_defaults_or_says_why_not(code_defaults):
    checked = 0
    for name, value in app_settings().items():
        deployed = deployed_value(value)
        if name in code_defaults and deployed is not None and name not in AZURE_DIFFERS:
            assert deployed == code_defaults[name], name
            checked += 1
    assert checked >= 8
