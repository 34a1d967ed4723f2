"""The app's Microsoft Entra credential: managed identity in Azure, developer login locally.

:func:`default_credential` builds one; the composition root (:mod:`shared.composition`)
keeps it for the worker. ``azure.identity`` is imported here, not at module load, so a cold
start that never needs a token does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def default_credential() -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    # AZURE_CLIENT_ID selects a user-assigned identity (azure-identity's convention).
    return DefaultAzureCredential()
