"""Where the SQL connection string comes from.

Local runs read ``SQL_CONNECTION_STRING`` from the settings. The value is a secret: it is
never logged, echoed or put in an exception message.
"""

from __future__ import annotations

from shared.settings import SettingsError, get_settings


def sql_connection_string() -> str:
    value = get_settings().sql_connection_string
    if value is None:
        raise SettingsError(
            "SQL_CONNECTION_STRING", "not set; the functions have no database to write to"
        )
    return value
