"""Settings are read once, with defaults, and errors name the setting, never its value."""

from __future__ import annotations

import pytest

from shared.platform.settings import SettingsError, load_settings

BASE = {"PATIENT_STORAGE_CONNECTION": "UseDevelopmentStorage=true", "EPHI_OWNER": "admin@x.example"}


def test_defaults():
    s = load_settings(BASE)
    assert s.uploads_container == "patient-uploads"
    assert s.tags.columns() == {
        "dataProfile": "ePHI",
        "owner": "admin@x.example",
        "environment": "Pilot",
        "department": "Global Ecosystem",
    }
    assert s.import_batch_size == 5000 and s.sql_connection_string is None


def test_secrets_stay_out_of_repr():
    s = load_settings({**BASE, "SQL_CONNECTION_STRING": "Server=x;Pwd=hunter2-secret"})
    assert "hunter2-secret" not in repr(s)
    assert "UseDevelopmentStorage" not in repr(s)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({**BASE, "AUTH_MODE": "open"}, "AUTH_MODE"),
        ({**BASE, "FACILITY_IDS": '{"org": "AB"}'}, "FACILITY_IDS"),
        ({**BASE, "DEFAULT_FACILITY_ID": "?"}, "DEFAULT_FACILITY_ID"),
        # Letters the rule book refuses for facid (it was accepted here, then every
        # admission mapped to it was refused with 422).
        ({**BASE, "FACILITY_IDS": '{"org-1": "é"}'}, "FACILITY_IDS"),
        ({**BASE, "DEFAULT_FACILITY_ID": "É"}, "DEFAULT_FACILITY_ID"),
        ({**BASE, "DEFAULT_FACILITY_ID": "²"}, "DEFAULT_FACILITY_ID"),
        ({**BASE, "EPHI_OWNER": ""}, "EPHI_OWNER"),
        ({**BASE, "PATIENT_UPLOADS_CONTAINER": "Bad_Name"}, "PATIENT_UPLOADS_CONTAINER"),
        ({**BASE, "IMPORT_BATCH_SIZE": "lots"}, "IMPORT_BATCH_SIZE"),
        ({**BASE, "IMPORT_BATCH_SIZE": "0"}, "IMPORT_BATCH_SIZE"),
        ({**BASE, "IMPORT_PROGRESS_SECONDS": "-1"}, "IMPORT_PROGRESS_SECONDS"),
        (
            {**BASE, "PATIENT_STORAGE_ACCOUNT_URL": "acct.blob.core.windows.net"},
            "PATIENT_STORAGE_ACCOUNT_URL",
        ),
    ],
)
def test_errors_name_the_setting(env, setting):
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.setting == setting
    assert str(error.value).startswith(f"app setting {setting}: ")


def test_facility_settings_follow_the_rule_book():
    from shared.records.rules import RULE

    settings = load_settings({**BASE, "FACILITY_IDS": '{"org-1": "b"}', "DEFAULT_FACILITY_ID": "c"})
    assert settings.facility_ids == {"org-1": RULE["facid"].check("b")}
    assert settings.default_facility_id == RULE["facid"].check("c") == "C"
