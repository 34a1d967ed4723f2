"""infra/ read as data: the Bicep parsed with pycep (the parser checkov uses), for the tests
that hold the templates to the code and for the generated docs (role assignments, audit
tables, who can reach patient data)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

INFRA = Path(__file__).resolve().parent.parent / "infra"

# Every role the templates grant, by its role definition id (Microsoft Learn, Azure
# built-in roles: the same ids in every tenant).
ROLES = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
}

# What each role may do in the data plane, as Microsoft Learn's built-in roles page lists its
# dataActions: a role with none reaches no blob, message, secret or row, whatever its scope.
DATA_ACTIONS = {
    "Key Vault Secrets User": ("Microsoft.KeyVault/vaults/secrets/getSecret/action",),
    "Key Vault Secrets Officer": ("Microsoft.KeyVault/vaults/secrets/*",),
    "Storage Blob Data Reader": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    ),
    "Storage Blob Data Contributor": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
    ),
    "Storage Blob Data Owner": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*",
    ),
    "Storage Queue Data Reader": (
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
    ),
    "Storage Queue Data Message Processor": (
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/*",
    ),
    "Storage Queue Data Message Sender": (
        "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
    ),
    "Monitoring Metrics Publisher": (
        "Microsoft.Insights/Metrics/Write",
        "Microsoft.Insights/Telemetry/Write",
    ),
    "Reader": (),  # actions */read: settings, never keys (listKeys is an action, not a read)
    "Log Analytics Reader": (),  # reads the workspace's logs: audit records, never patient data
}


@functools.cache
def bicep(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(BicepParser().parse(text=(INFRA / name).read_text()))
    return parsed


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's own declaration, inside a ``for`` loop or an ``if`` condition."""
    config: dict[str, Any] = resource["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


def resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name in bicep_files():
        for key, resource in bicep(name)["resources"].items():
            yield name, key, resource


def rendered(value: Any) -> str:
    """A Bicep expression as written: ``identity.properties.clientId`` for pycep's tree."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return f"{rendered(operands['operand_1'])}.{rendered(operands['operand_2'])}"
    return str(value)


def scope_of(file: str, scope: str) -> str:
    """What a role assignment's scope (a symbolic resource name) is."""
    resource = bicep(file)["resources"][scope]
    if resource["type"].endswith("/containers"):
        name = json.dumps(body(resource)["name"])
        container = re.search(r"/default/(?:\$\{)?([A-Za-z-]+)", name)
        assert container, name
        found = container.group(1)
        return "container:" + ("patient-uploads" if found == "uploadsContainer" else found)
    if resource["type"].endswith("/queues"):
        name = json.dumps(body(resource)["name"])
        queue = re.search(r"/default/(?:\$\{)?([A-Za-z-]+)", name)
        assert queue, name
        return "queue:" + {"importQueueName": "bulk-import"}.get(queue.group(1), queue.group(1))
    if resource["type"] == "Microsoft.KeyVault/vaults/secrets":
        assert body(resource)["name"] == "sqlSecretName"
        return "secret:patient-db-connection-string"  # main.bicep's sqlSecretName
    if resource["type"] == "Microsoft.Storage/storageAccounts":
        return f"{resource['type']}:{'host' if 'host' in scope.lower() else scope}"
    return str(resource["type"])


def role_of(file: str, role: Any) -> str:
    variables = bicep(file)["variables"]
    if isinstance(role, dict):  # roles.keyVaultSecretsUser
        operands = role["operator"]["operands"]
        role_id = variables[operands["operand_1"]]["value"][operands["operand_2"]]
    else:
        role_id = variables[role]["value"]
    return ROLES[role_id]


@dataclass(frozen=True)
class Assignment:
    """One role assignment a template declares."""

    file: str
    key: str
    role: str
    scope: str  # ``resourceGroup`` where none is given (the module's own group)
    principal: str  # the parameter or property its principal comes from
    reason: str  # the ``// Why:`` comment above it


def role_assignments() -> Iterator[Assignment]:
    """Every role assignment the templates declare, in file order."""
    for file, key, resource in resources():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        properties = body(resource)["properties"]
        parameters = properties["roleDefinitionId"]["function"]["parameters"]
        scope = body(resource).get("scope")
        yield Assignment(
            file,
            key,
            role_of(file, parameters["resource_name_1"]),
            scope_of(file, scope) if scope else "resourceGroup",
            rendered(properties["principalId"]),
            reason_of(file, key),
        )


def reason_of(file: str, key: str) -> str:
    """The ``// Why:`` comment above ``resource key`` in ``file`` (empty when none)."""
    text = (INFRA / file).read_text()
    declaration = text.index(f"resource {key} ")
    block = text[text.rfind("\n\n", 0, declaration) : declaration]
    lines = [line.strip().removeprefix("//").strip() for line in block.strip().splitlines()]
    said = " ".join(line for line in lines if line)
    return said.removeprefix("Why:").strip() if said.startswith("Why:") else ""
