"""The app's Microsoft Entra credential: managed identity in Azure, developer login locally.

Built once per process on first use. ``azure.identity`` is imported here, not at module
load, so a cold start that never needs a token does not pay for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_lock = threading.Lock()
_credential: TokenCredential | None = None


def get_credential() -> TokenCredential:
    global _credential
    if _credential is None:
        with _lock:
            if _credential is None:
                from azure.identity import DefaultAzureCredential

                # AZURE_CLIENT_ID selects a user-assigned identity (azure-identity's convention).
                _credential = DefaultAzureCredential()
    return _credential


def reset_credential() -> None:
    global _credential
    with _lock:
        _credential = None
