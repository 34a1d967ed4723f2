"""infra/: what the templates deploy is checked here, since Azure cannot be reached.

The Bicep is parsed with pycep (the parser checkov uses) and checked for the tags, the app
settings the code reads, least-privilege role assignments, no secret in an output or an app
setting, and the security switches; checkov scans it; the T-SQL grant script is parsed and
held to what the functions really run.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sqlglot

from devtools import events, fhir_export, los_generator
from devtools.bicep import (
    DATA_ACTIONS,
    INFRA,
    bicep,
    bicep_files,
    body,
    rendered,
    resources,
    role_assignments,
)
from devtools.queue_host import QueueHost
from ops.sql_script import batches
from shared.platform.settings import load_settings
from tests import fhir_samples as fx
from tests import tsql_shadow
from tests.conftest import (
    APP_SETTINGS,
    GRANT_SCRIPT,
    OWNER,
    PROJECT_ROOT,
    deliver,
    function,
    http,
    reset_process_state,
)
from tests.test_fhir_export_import import upload_export

EPHI_TAGS = {"dataProfile", "owner", "environment", "department"}
# Resource types that take no tags (extension and child resources).
UNTAGGED_TYPES = {
    "Microsoft.Authorization/roleAssignments",
    "Microsoft.Insights/diagnosticSettings",
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/queueServices",
    "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Storage/storageAccounts/managementPolicies",
    "Microsoft.OperationalInsights/workspaces/tables",
    "Microsoft.Authorization/policyAssignments",
    "Microsoft.Sql/servers/firewallRules",
    "Microsoft.Sql/servers/auditingSettings",
    "Microsoft.Sql/servers/securityAlertPolicies",
    "Microsoft.Sql/servers/sqlVulnerabilityAssessments",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
    "Microsoft.Web/sites/config",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
}
# Settings the code reads that the template must NOT set in Azure, and why.
LOCAL_ONLY_SETTINGS = {
    "PATIENT_STORAGE_CONNECTION": "a connection string with an account key; Azure: the identity",
    "SQL_CONNECTION_STRING": "the connection string comes from Key Vault in Azure",
    "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "switches a safety check off, for a local test vault",
}
# Settings the code reads that App Service itself injects: the template must not set them.
INJECTED_BY_THE_PLATFORM = {
    "WEBSITE_AUTH_ENABLED": "True when App Service authentication stands in front of the app",
}
# The Functions host's own settings (not read by shared/platform/settings.py).
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",  # the host's storage through the user-assigned identity
    "AZURE_CLIENT_ID",  # azure-identity's: which managed identity DefaultAzureCredential uses
    "APPLICATIONINSIGHTS_CONNECTION_STRING",  # no credential: App Insights local auth is off
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    # The queue trigger's identity-based connection, read by the host (the endpoint, which
    # the code reads too, is not listed here).
    "PATIENT_STORAGE_CONNECTION__credential",
    "PATIENT_STORAGE_CONNECTION__clientId",
}
EXPECTED_GRANTS = {
    # The app's identity.
    ("Key Vault Secrets User", "secret:patient-db-connection-string"),
    ("Storage Blob Data Reader", "container:patient-uploads"),
    ("Storage Blob Data Contributor", "container:models"),  # scoring, and retrain_model
    ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts:host"),
    ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
    ("Storage Blob Data Contributor", "container:deadletter"),  # Event Grid's dead letters
    ("Storage Blob Data Contributor", "container:export-shards"),  # an export in ranges
    ("Storage Queue Data Message Sender", "queue:bulk-import"),  # Event Grid, and fan-out
    ("Storage Queue Data Reader", "queue:bulk-import"),  # the trigger peeks, the scaler counts
    ("Storage Queue Data Message Processor", "queue:bulk-import"),  # the trigger takes
    ("Storage Queue Data Message Sender", "queue:bulk-import-poison"),  # the host poisons
    # People and systems, each only when its principal id is given.
    ("Storage Blob Data Contributor", "container:patient-uploads"),  # the EHR / ETL
    ("Storage Blob Data Contributor", "container:models"),  # the data scientist
    ("Key Vault Secrets Officer", "secret:patient-db-connection-string"),  # the site admin
    ("Storage Blob Data Reader", "container:deadletter"),  # the operator
    ("Storage Queue Data Message Processor", "queue:bulk-import-poison"),  # the operator
    ("Reader", "resourceGroup"),  # the auditor: settings, role assignments, policy findings
    ("Log Analytics Reader", "Microsoft.OperationalInsights/workspaces"),  # the auditor
}


def names_read_by_the_settings() -> set[str]:
    """Every app setting ``load_settings`` looks at, recorded as it reads them."""
    seen: set[str] = set()

    class Recording(Mapping[str, str]):
        def __init__(self) -> None:
            self.values = {"EPHI_OWNER": OWNER, "PATIENT_STORAGE_ACCOUNT_URL": "https://a.example"}

        def __getitem__(self, key: str) -> str:
            seen.add(key)
            return self.values[key]

        def get(self, key: str, default: Any = None) -> Any:
            seen.add(key)
            return self.values.get(key, default)

        def __iter__(self) -> Iterator[str]:
            return iter(self.values)

        def __len__(self) -> int:
            return len(self.values)

    load_settings(Recording())
    return seen


def app_settings() -> dict[str, Any]:
    site = bicep("modules/functionapp.bicep")["resources"]["app"]["config"]
    return {s["name"]: s["value"] for s in site["properties"]["siteConfig"]["appSettings"]}


# --- tags -----------------------------------------------------------------------------------


def test_the_tags_variable_carries_the_four_ephi_tags_from_parameters():
    tags = bicep("main.bicep")["variables"]["tags"]["value"]
    assert set(tags) >= EPHI_TAGS
    assert tags["owner"] == "owner" and tags["dataProfile"] == "dataProfile"
    # Every module gets them.
    for key, module in bicep("main.bicep")["modules"].items():
        if key not in ("rbac", "policy"):  # role and policy assignments take no tags
            assert body(module)["params"]["tags"] == "tags", key


@pytest.mark.parametrize("file", bicep_files())
def test_every_resource_is_tagged(file):
    for key, resource in bicep(file)["resources"].items():
        if resource["existing"] or resource["type"] in UNTAGGED_TYPES:
            continue
        tags = body(resource).get("tags")
        if isinstance(tags, dict):  # union(tags, {...})
            tags = tags["function"]["parameters"]["arg_1"]
        assert tags == "tags", f"{file}: {key} ({resource['type']}) has no ePHI tags"
        if file != "main.bicep":
            assert "tags" in bicep(file)["parameters"]


# --- app settings: the settings module is the source of truth --------------------------------


def test_the_app_settings_are_exactly_what_the_code_reads():
    read = names_read_by_the_settings()
    template = set(app_settings())
    ours = template - PLATFORM_SETTINGS
    assert not ours - read, f"the template sets settings no code reads: {sorted(ours - read)}"
    missing = read - ours - set(LOCAL_ONLY_SETTINGS) - set(INJECTED_BY_THE_PLATFORM)
    assert not missing, f"the code reads settings the template does not set: {sorted(missing)}"
    assert not (set(LOCAL_ONLY_SETTINGS) | set(INJECTED_BY_THE_PLATFORM)) & template


def test_no_secret_key_or_connection_string_in_an_app_setting_or_an_output():
    text = "\n".join((INFRA / f).read_text() for f in bicep_files())
    assert "listKeys(" not in text and "listSecrets(" not in text
    for name, value in app_settings().items():
        rendered = json.dumps(value)
        assert not re.search(r"AccountKey=|Password=|SharedAccessSignature=|pwd=", rendered, re.I)
        if name not in PLATFORM_SETTINGS:
            assert "ConnectionString" not in rendered, name
    for file in bicep_files():
        for output in bicep(file).get("outputs", {}):
            name = output.upper().replace("KEY_VAULT", "")
            assert not re.search(r"KEY|SECRET|PASSWORD|CONNECTION", name), (file, output)
    # The one secret the templates write holds no credential.
    secret = bicep("modules/keyvault.bicep")["resources"]["sqlConnection"]["config"]
    connection = json.dumps(secret["properties"]["value"])
    assert "Encrypt=yes" in connection
    assert not re.search(r"UID=|PWD=|Password|User ID", connection, re.I)


# --- least privilege ------------------------------------------------------------------------


def test_role_assignments_are_the_listed_ones_each_with_its_reason():
    grants = set()
    for assignment in role_assignments():
        grants.add((assignment.role, assignment.scope))
        assert assignment.reason, assignment.key  # a "// Why:" comment above each says why
    assert grants == EXPECTED_GRANTS


def roles_reaching_patient_data(grants: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (role, scope) pairs among ``grants`` that can read a blob, a message or a secret,
    or write anything: any role with a data action."""
    return [(role, scope) for role, scope in grants if DATA_ACTIONS[role]]


def test_the_auditor_holds_no_role_that_reaches_patient_data():
    """The auditor reads settings and audit records, nothing of the data plane; and never the
    database, where no user is made for them (infra/sql/grant-app-user.sql names the app)."""
    auditor = [(a.role, a.scope) for a in role_assignments() if a.principal == "auditorPrincipalId"]
    assert sorted(auditor) == [
        ("Log Analytics Reader", "Microsoft.OperationalInsights/workspaces"),
        ("Reader", "resourceGroup"),
    ]
    assert roles_reaching_patient_data(auditor) == []
    # The check itself would catch a data role given to the auditor.
    assert roles_reaching_patient_data([*auditor, ("Storage Blob Data Reader", "container:x")])
    assert "auditorPrincipalId" not in GRANT_SCRIPT.read_text()
    assert bicep("main.bicep")["parameters"]["auditorPrincipalId"]["default"] == ""


def test_the_hipaa_hitrust_initiative_is_assigned_to_the_group_and_can_be_turned_off():
    main = bicep("main.bicep")
    assert main["parameters"]["enableHipaaHitrustPolicy"]["default"] is True
    module = main["modules"]["policy"]
    assert module["config"]["condition"] == "enableHipaaHitrustPolicy"
    assert body(module)["scope"] == "rg"
    [assignment] = [
        r
        for r in bicep("modules/policy.bicep")["resources"].values()
        if r["type"] == "Microsoft.Authorization/policyAssignments"
    ]
    config = body(assignment)
    rendered = json.dumps(config)
    # The built-in HITRUST/HIPAA initiative (Azure/azure-policy, HIPAA_HITRUST_audit.json).
    variables = bicep("modules/policy.bicep")["variables"]
    assert variables["hipaaHitrustInitiative"]["value"] == "a169a624-5599-4385-a696-c8d643089fab"
    assert "policySetDefinitions" in rendered and "hipaaHitrustInitiative" in rendered
    # An identity, as Azure requires of an initiative with DeployIfNotExists policies, and
    # no role for it anywhere: it reports, it never changes a resource.
    assert config["identity"]["type"] == "SystemAssigned"
    assert not any(
        "hipaaHitrust" in json.dumps(body(r))
        for _, _, r in resources()
        if r["type"] == "Microsoft.Authorization/roleAssignments"
    )
    assert "parameters" not in config["properties"]  # every parameter has its default
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["enableHipaaHitrustPolicy"]["value"] == "${ENABLE_HIPAA_HITRUST_POLICY=true}"
    assert parameters["auditorPrincipalId"]["value"] == "${AUDITOR_PRINCIPAL_ID=}"


AUDIT_TABLES = {
    # table: what writes it (and the test that proves the writer sends it there)
    "AzureDiagnostics": "SQL auditing, through the master database's diagnostic setting",
    "AZKVAuditLogs": "Key Vault's audit events (its diagnostic setting, Dedicated)",
    "StorageBlobLogs": "the data account's blob reads, writes and deletes",
    "StorageQueueLogs": "the import queue's messages sent, taken and deleted",
    "AppTraces": "the app's audit lines",
    "AppRequests": "every call to the functions",
}


def test_every_audit_record_is_kept_six_years():
    monitoring = bicep("modules/monitoring.bicep")
    tables = monitoring["variables"]["auditTables"]["value"]
    assert set(tables) == set(AUDIT_TABLES)
    table = body(monitoring["resources"]["auditTable"])
    assert table["properties"]["totalRetentionInDays"] == "auditRetentionDays"
    assert table["properties"]["plan"] == "Analytics"
    six_years = 6 * 365
    assert monitoring["parameters"]["auditRetentionDays"]["decorators"]
    assert bicep("main.bicep")["parameters"]["auditRetentionDays"]["default"] == six_years
    text = (INFRA / "main.bicep").read_text() + (INFRA / "modules/monitoring.bicep").read_text()
    assert text.count(f"@minValue({six_years})") == 2  # neither file lets it be shortened
    # Each source writes where the retention is: Key Vault to its own table, SQL auditing
    # and storage to the workspace.
    vault = body(bicep("modules/keyvault.bicep")["resources"]["vaultLogs"])["properties"]
    assert vault["logAnalyticsDestinationType"] == "Dedicated"
    sql = body(bicep("modules/sql.bicep")["resources"]["auditToWorkspace"])["properties"]
    assert [log["category"] for log in sql["logs"]] == ["SQLSecurityAuditEvents"]
    storage = bicep("modules/storage.bicep")["resources"]
    for key in ("dataBlobLogs", "queueLogs"):
        assert body(storage[key])["properties"]["workspaceId"] == "workspaceId"


# --- security switches ----------------------------------------------------------------------


def test_the_security_switches_are_on():
    account = body(bicep("modules/storage.bicep")["resources"]["account"])["properties"]
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    assert account["supportsHttpsTrafficOnly"] is True
    assert account["encryption"]["requireInfrastructureEncryption"] is True

    vault = bicep("modules/keyvault.bicep")["resources"]["vault"]["config"]["properties"]
    assert vault["enablePurgeProtection"] is True and vault["enableSoftDelete"] is True
    assert vault["enableRbacAuthorization"] is True

    site = bicep("modules/functionapp.bicep")["resources"]["app"]["config"]
    assert site["properties"]["httpsOnly"] is True
    # A user-assigned identity: it outlives the app, so the database user stays bound to it.
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["siteConfig"]
    assert config["minTlsVersion"] == "1.2" and config["ftpsState"] == "Disabled"
    publishing = bicep("modules/functionapp.bicep")["resources"]
    assert publishing["ftp"]["config"]["properties"]["allow"] is False
    assert publishing["scm"]["config"]["properties"]["allow"] is False

    sql = bicep("modules/sql.bicep")["resources"]["server"]["config"]["properties"]
    assert sql["minimalTlsVersion"] == "1.2"
    assert sql["administrators"]["azureADOnlyAuthentication"] is True

    insights = bicep("modules/monitoring.bicep")["resources"]["applicationInsights"]["config"]
    assert insights["properties"]["DisableLocalAuth"] is True


def test_uploads_and_dead_letters_are_deleted_after_their_retention():
    policy = bicep("modules/storage.bicep")["resources"]["retention"]["config"]["properties"]
    rendered = json.dumps(policy)
    for parameter in ("uploadRetentionDays", "deadLetterRetentionDays"):
        assert parameter in rendered
        default = bicep("main.bicep")["parameters"][parameter]["default"]
        assert 1 <= int(default) <= 90, parameter
    for kind in ("baseBlob", "version", "snapshot"):
        assert f'"{kind}"' in rendered  # earlier versions and snapshots go too


def test_the_storage_redundancy_is_a_parameter_that_works_in_every_region():
    sku = bicep("main.bicep")["parameters"]["storageSku"]
    # GRS needs no availability zones; GZRS (zones) is a choice, never a hard-coded value.
    assert sku["default"] == "Standard_GRS"
    assert "Standard_GZRS" not in (INFRA / "modules" / "storage.bicep").read_text()


def test_only_flex_consumption_is_offered():
    assert "planSku" not in bicep("main.bicep")["parameters"]
    text = (INFRA / "modules" / "functionapp.bicep").read_text()
    assert "ElasticPremium" not in text and "'FC1'" in text


def test_easy_auth_leaves_only_the_capability_statement_open_and_health_to_its_key():
    import function_app

    auth = bicep("modules/functionapp.bicep")["resources"]["auth"]
    paths = body(auth)["properties"]["globalValidation"]["excludedPaths"]
    # Events arrive by queue: no webhook path to leave open.
    assert paths == ["/api/metadata", "/api/health"]
    levels = {
        f.get_function_name(): str(b["authLevel"].value)
        for f in function_app.app.get_functions()
        for b in f.get_bindings_dict()["bindings"]
        if b.get("type") == "httpTrigger"
    }
    assert levels["capability_statement"] == "anonymous"
    assert levels["health"] == "function"  # a key, whatever AUTH_MODE says


def log_alerts() -> dict[str, dict[str, Any]]:
    alerts = bicep("modules/monitoring.bicep")["variables"]["logAlerts"]["value"]
    return {alert["name"]: alert for alert in alerts}


def kql_parse(query: str) -> re.Pattern[str]:
    """The regular expression a KQL ``parse message with * "a=" a:long ...`` matches."""
    pattern = query.split("parse message with ", 1)[1].split(" | ", 1)[0]
    regex = ""
    for token in re.findall(r'"[^"]*"|\*|\w+:long', pattern):
        if token == "*":
            regex += ".*?"
        elif token.startswith('"'):
            regex += re.escape(token[1:-1])
        else:
            regex += f"(?P<{token.split(':')[0]}>\\d+)"
    return re.compile(regex)


def test_each_alert_reads_the_line_the_code_logs(app_env, uploads, db, caplog):
    """Every log alert's query names a constant the code logs under, and on lines the code
    really writes (captured here from real runs) it finds what it is meant to."""
    import logging

    from shared.bulk.importer import GAVE_UP
    from shared.bulk.runs.ingest_runs import RUN_FINISHED
    from shared.fhir.audit import AUDIT_WRITE_FAILED

    alerts = log_alerts()
    assert set(alerts) == {
        "audit-write-failed",
        "import-poisoned",
        "import-run-failed",
        "import-rejects-spike",
        "http-5xx",
        "model-flagged",
        "challenger-refused",
        "retrain-failed",
    }
    from los_model.monitoring import MODEL_FLAGGED
    from los_model.retraining import CHALLENGER_REFUSED
    from retrain_model.function import RETRAIN_FAILED

    starts = {
        "retrain-failed": RETRAIN_FAILED,
        "model-flagged": MODEL_FLAGGED,
        "challenger-refused": CHALLENGER_REFUSED,
        "audit-write-failed": AUDIT_WRITE_FAILED,
        "import-poisoned": GAVE_UP,
        "import-run-failed": RUN_FINISHED,
        "import-rejects-spike": RUN_FINISHED,
    }
    for name, marker in starts.items():
        assert alerts[name]["query"].startswith(f'traces | where message startswith "{marker}"')
    assert alerts["http-5xx"]["query"] == "requests | where toint(resultCode) >= 500"
    assert all(alert["threshold"] >= 0 for alert in alerts.values())

    # Real runs: one clean, one a fifth refused, one refused whole.
    caplog.set_level(logging.INFO)
    for data in (
        los_generator.csv_bytes(200, seed=1),
        los_generator.csv_bytes(200, seed=2, start_eid=500_000, bad_rows=0.2),
        b"not,a,header\n1,2,3\n",
    ):
        url, etag = uploads.put(data)
        deliver(events.event_grid_schema(url, etag))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(RUN_FINISHED)]
    assert len(lines) == 3
    failed = [line for line in lines if " failed: " in line]
    assert len(failed) == 1 and "file rejected" in failed[0]
    spike = kql_parse(alerts["import-rejects-spike"]["query"])
    parsed = [spike.match(line) for line in lines[:2]]
    assert all(parsed), lines
    counts = [{k: int(v) for k, v in m.groupdict().items()} for m in parsed if m]
    assert counts[0]["read"] == 200 and counts[0]["rejected"] * 10 <= counts[0]["read"]
    assert counts[1]["rejected"] * 10 > counts[1]["read"] >= 100  # the one the alert fires on
    assert all(c["read"] == c["stored"] + c["rejected"] for c in counts)


# Application Insights' tables and the telemetry type host.json's sampling names each by.
TELEMETRY_TYPES = {
    "traces": "Trace",
    "requests": "Request",
    "exceptions": "Exception",
    "dependencies": "Dependency",
    "customEvents": "Event",
}
IDENTITY_CLIENT_ID = "identity.properties.clientId"


def app_grants() -> set[tuple[str, str]]:
    """(role, scope) of every role assignment made to the app's identity."""
    return {(a.role, a.scope) for a in role_assignments() if a.principal == "appPrincipalId"}


def test_every_alert_reads_telemetry_that_is_never_sampled_and_that_the_app_may_write():
    """The telemetry contract. Each alert's signal (the code emitting it is held by
    test_each_alert_reads_the_line_the_code_logs) must (1) be of a telemetry type that
    host.json's adaptive sampling never drops, since a burst of failures is exactly when it
    samples; (2) be written by an identity Application Insights accepts: local auth is off, so
    the host signs in as the user-assigned identity named in the auth string, which holds
    Monitoring Metrics Publisher on the component the alerts query."""
    host = json.loads((PROJECT_ROOT / "host.json").read_text())
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    never_sampled = (
        set(sampling["excludedTypes"].split(";"))
        if sampling["isEnabled"]
        else set(TELEMETRY_TYPES.values())
    )
    for name, alert in log_alerts().items():
        table = alert["query"].split("|", 1)[0].strip()
        assert TELEMETRY_TYPES[table] in never_sampled, f"{name}: {table} may be sampled away"
    assert "includedTypes" not in sampling  # it would sample only those, and override the rest

    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        f"ClientId=${{{IDENTITY_CLIENT_ID}}};Authorization=AAD"
    )
    assert ("Monitoring Metrics Publisher", "Microsoft.Insights/components") in app_grants()
    # The alerts query the component the app writes to.
    monitoring = bicep("modules/monitoring.bicep")["resources"]
    assert body(monitoring["logAlert"])["properties"]["scopes"] == [
        {
            "operator": {
                "type": "property_accessor",
                "operands": {"operand_1": "applicationInsights", "operand_2": "id"},
            }
        }
    ]
    modules = bicep("main.bicep")["modules"]
    assert rendered(body(modules["functionApp"])["params"]["applicationInsightsName"]) == (
        "monitoring.outputs.applicationInsightsName"
    )
    assert rendered(body(modules["rbac"])["params"]["applicationInsightsName"]) == (
        "monitoring.outputs.applicationInsightsName"
    )


def test_every_identity_based_setting_names_the_user_assigned_identity():
    """The app has one identity, user-assigned: a setting that signs in without naming its
    client id would ask for a system-assigned identity that does not exist. And each
    connection's identity holds the data role that connection needs, at its narrowest scope."""
    site = bicep("modules/functionapp.bicep")["resources"]["app"]["config"]
    assert site["identity"]["type"] == "UserAssigned"
    settings = app_settings()
    connections = [n.removesuffix("__credential") for n in settings if n.endswith("__credential")]
    assert sorted(connections) == ["AzureWebJobsStorage", "PATIENT_STORAGE_CONNECTION"]
    for connection in connections:
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert rendered(settings[f"{connection}__clientId"]) == IDENTITY_CLIENT_ID, connection
    assert rendered(settings["AZURE_CLIENT_ID"]) == IDENTITY_CLIENT_ID  # DefaultAzureCredential
    assert (
        "ClientId=${" + IDENTITY_CLIENT_ID + "}"
        in settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    )
    # The identity whose principal the role assignments name is that same identity.
    main_modules = bicep("main.bicep")["modules"]
    assert rendered(body(main_modules["rbac"])["params"]["appPrincipalId"]) == (
        "functionApp.outputs.principalId"
    )
    outputs = bicep("modules/functionapp.bicep")["outputs"]
    assert rendered(outputs["principalId"]["value"]) == "identity.properties.principalId"
    needed = {
        # the host's own storage (packages, leases, timers)
        "AzureWebJobsStorage": {
            ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts:host")
        },
        # bulk_import's trigger: peek, take, poison
        "PATIENT_STORAGE_CONNECTION": {
            ("Storage Queue Data Reader", "queue:bulk-import"),
            ("Storage Queue Data Message Processor", "queue:bulk-import"),
            ("Storage Queue Data Message Sender", "queue:bulk-import-poison"),
        },
        # the code's DefaultAzureCredential: the secret, the uploads, the models, fan-out
        "AZURE_CLIENT_ID": {
            ("Key Vault Secrets User", "secret:patient-db-connection-string"),
            ("Storage Blob Data Reader", "container:patient-uploads"),
            ("Storage Blob Data Contributor", "container:models"),
            ("Storage Queue Data Message Sender", "queue:bulk-import"),
        },
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": {
            ("Monitoring Metrics Publisher", "Microsoft.Insights/components")
        },
    }
    granted = app_grants()
    for connection, roles in needed.items():
        assert roles <= granted, (connection, roles - granted)


def test_with_network_isolation_event_grid_reaches_the_data_account_as_documented():
    """Event Grid delivers to a firewalled storage queue (and dead-letters) with its
    system-assigned identity through the trusted-services exception; with public network
    access 'Disabled' no firewall rule or exception is evaluated. So the data account keeps
    access 'Enabled' behind a firewall that denies every address and network, and the host
    account, which Event Grid never touches, is 'Disabled'."""
    account = body(bicep("modules/storage.bicep")["resources"]["account"])["properties"]
    access = account["publicNetworkAccess"]["operator"]["operands"]
    host_only = {"operand_1": "i", "operand_2": 0}  # accounts[0] is the host account
    assert access["condition"]["operator"]["operands"] == {
        "operand_1": "networkIsolation",
        "operand_2": {"operator": {"type": "equals", "operands": host_only}},
    }
    assert (access["true_value"], access["false_value"]) == ("Disabled", "Enabled")
    acls = account["networkAcls"]
    assert acls["bypass"] == "AzureServices"
    assert acls["ipRules"] == [] and acls["virtualNetworkRules"] == []
    assert "Deny" in json.dumps(acls["defaultAction"])
    storage = bicep("modules/storage.bicep")
    assert storage["variables"]["accounts"]["value"][1].endswith("data")
    subscription = bicep("eventgrid.bicep")["resources"]["toBulkImport"]["config"]["properties"]
    assert subscription["deliveryWithResourceIdentity"]["identity"] == {"type": "SystemAssigned"}
    assert subscription["deadLetterWithResourceIdentity"]["identity"] == {"type": "SystemAssigned"}


def test_the_dead_letter_alert_watches_the_topic_that_dead_letters():
    resources = bicep("eventgrid.bicep")["resources"]
    alert = body(resources["deadLettered"])["properties"]
    [scope] = alert["scopes"]
    assert scope["operator"]["operands"] == {"operand_1": "topic", "operand_2": "id"}
    (criterion,) = alert["criteria"]["allOf"]
    assert criterion["metricNamespace"] == "Microsoft.EventGrid/systemTopics"
    assert criterion["metricName"] == "DeadLetteredCount"
    assert criterion["threshold"] == 0
    postdeploy = (PROJECT_ROOT / "scripts" / "azure" / "postdeploy.sh").read_text()
    assert 'actionGroupId="${AZURE_ALERT_ACTION_GROUP_ID:-}"' in postdeploy
    assert "AZURE_ALERT_ACTION_GROUP_ID" in bicep("main.bicep")["outputs"]


def test_events_of_the_uploads_container_only_go_to_the_queue_bulk_import_empties():
    from bulk_import.function import CONNECTION
    from shared.platform.queues import IMPORT_QUEUE, POISON_QUEUE
    from shared.platform.settings import QUEUE_SERVICE_URI

    subscription = bicep("eventgrid.bicep")["resources"]["toBulkImport"]["config"]["properties"]
    delivery = subscription["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}  # no key, no connection string
    assert delivery["destination"]["endpointType"] == "StorageQueue"
    assert delivery["destination"]["properties"]["queueName"] == "importQueueName"
    assert bicep("eventgrid.bicep")["variables"]["importQueueName"]["value"] == IMPORT_QUEUE
    queues = {
        body(r)["name"]
        for r in bicep("modules/storage.bicep")["resources"].values()
        if r["type"].endswith("/queues")
    }
    assert queues == {IMPORT_QUEUE, POISON_QUEUE}
    # The trigger's identity-based connection is the setting the code reads the endpoint from.
    assert f"{CONNECTION}__queueServiceUri" == QUEUE_SERVICE_URI
    assert {f"{CONNECTION}__credential", f"{CONNECTION}__clientId"} <= set(app_settings())
    assert subscription["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert "containers/${uploadsContainer}/blobs/" in json.dumps(subscription["filter"])
    assert subscription["deadLetterWithResourceIdentity"]["deadLetterDestination"]


# --- checkov ---------------------------------------------------------------------------------


def test_checkov_finds_nothing_that_is_not_annotated():
    checkov = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
    assert checkov.exists(), "scripts/bootstrap.sh installs checkov into .venv-checkov"
    proc = subprocess.run(
        [str(checkov), "-d", str(INFRA), "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, proc.stderr[-2000:]
    assert summary["passed"] > 30
    unannotated = []
    for failed in report["results"]["failed_checks"]:
        # checkov's Bicep runner honours skip comments for its resource checks, not for its
        # graph checks: those must carry the same annotation, with a reason, on the resource.
        lines = "".join(line for _, line in failed["code_block"])
        if not re.search(rf"checkov:skip={failed['check_id']}:\s*\S", lines):
            unannotated.append(f"{failed['check_id']} {failed['resource']} ({failed['file_path']})")
    assert not unannotated, "\n".join(unannotated)
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


# --- the database user: the T-SQL grant script ----------------------------------------------

APP = "func-test123"


OBJECT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"
SCRIPT_VARIABLES = {
    "APP_IDENTITY_NAME": APP,
    "APP_OBJECT_ID": OBJECT_ID,
    "APP_CLIENT_ID": CLIENT_ID,
}


def grants() -> dict[str, set[str]]:
    """Table → privileges the script grants the app; anything else in it fails the test."""
    granted: dict[str, set[str]] = {}
    user_batches = []
    for batch in batches(GRANT_SCRIPT.read_text(), SCRIPT_VARIABLES):
        code = "\n".join(line for line in batch.splitlines() if not line.strip().startswith("--"))
        statement = sqlglot.parse_one(code, read="tsql")
        if not isinstance(statement, sqlglot.exp.Grant):
            user_batches.append(" ".join(code.split()))
            continue
        principals = [p.this.name for p in statement.args["principals"]]
        assert principals == [APP]
        table = statement.args["securable"]
        assert table.db == "dbo"
        granted.setdefault(table.name, set()).update(
            p.this.name.upper() for p in statement.args["privileges"]
        )
    # The user: a stale one (same name, another identity's SID) is dropped, then the user is
    # made bound to the identity's object id, never looked up by its display name.
    assert user_batches == [
        f"IF EXISTS ( SELECT 1 FROM sys.database_principals WHERE name = N'{APP}' AND sid <> "
        f"CAST(CAST(N'{CLIENT_ID}' AS UNIQUEIDENTIFIER) AS VARBINARY(16)) ) DROP USER [{APP}];",
        f"IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'{APP}') "
        f"CREATE USER [{APP}] FROM EXTERNAL PROVIDER WITH OBJECT_ID = '{OBJECT_ID}';",
    ]
    return granted


def test_the_grant_script_parses_and_grants_only_select_insert_update_on_our_tables():
    granted = grants()
    assert set(granted) == {
        "PatientData",
        "IngestRuns",
        "IngestRanges",
        "IngestRejects",
        "IngestResourceCounts",
        "IngestRangeResourceCounts",
        "AuditLog",
        "Facilities",
    }
    assert set().union(*granted.values()) <= {"SELECT", "INSERT", "UPDATE"}
    assert granted["Facilities"] == {"SELECT"}  # the database analyst loads them


def run_the_functions(uploads: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import with rejects (one batch with exactly one rejected row too), the same file
    fanned out in ranges over the import queue, an admission and a discharge, the capacity
    views and the audit report: every kind of statement the functions run, and a FHIR
    export."""
    data = los_generator.csv_bytes(300, bad_rows=0.05)
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag))
    monkeypatch.setitem(APP_SETTINGS, "IMPORT_RANGE_BYTES", "8192")
    reset_process_state()
    url, etag = uploads.put(data)  # a new version: a run of its own, in ranges
    deliver(events.event_grid_schema(url, etag, len(data)))
    QueueHost(uploads.connection_string, function("bulk_import")).drain()
    upload_export(uploads, list(fhir_export.generated(2, seed=8)), "exports/infra/")
    one_bad = los_generator.csv_bytes(3, start_eid=900_000).replace(b",F,", b",X,", 1)
    url, etag = uploads.put(one_bad)
    deliver(events.event_grid_schema(url, etag))
    admitted = http("admit_patient", fx.bundle(fx.encounter("8800", "2024-01-02T08:00:00Z")))
    assert admitted.status_code == 201
    ended = fx.encounter("8800", "2024-01-02T08:00:00Z", "2024-01-05T08:00:00Z", "finished")
    assert http("discharge_patient", ended, method="PUT").status_code == 200
    # The capacity view and the care line manager's list (audited).
    for name in ("capacity", "capacity_patients"):
        got = http(name, None, "GET", None, params={"facility": "A", "asOf": "2024-01-03"})
        assert got.status_code in (200, 404), got.get_body()[:300]  # 404: no facility A
    # The auditor's report reads the trail (and is itself a row on it).
    assert http("audit_report", None, "GET", None, params={"eid": "8800"}).status_code == 200


def test_the_functions_need_exactly_what_the_grant_script_gives(
    app_env, uploads, db, sql_server_shadow, tmp_path, monkeypatch, import_queue
):
    """Run on SQLite/PostgreSQL, judged as Azure SQL would: the shadow (tests/conftest.py)
    compiles each statement for SQL Server and checks it against the grant script. Here the
    check is mutated: with any one GRANT taken out of the script, the same run is refused,
    so every grant is needed and the shadow sees what each one is for."""
    run_the_functions(uploads, monkeypatch)
    from sqlalchemy.dialects import mssql

    from shared.bulk.patient_writer import _InsertMany

    # The bulk path's INSERT is compiled per dialect and sent as text: its SQL Server form.
    statements = [*sql_server_shadow.statements, _InsertMany(mssql.dialect()).sql]
    grants = tsql_shadow.Grants.from_script(GRANT_SCRIPT)
    assert tsql_shadow.missing(statements, grants) == []
    script = GRANT_SCRIPT.read_text()
    grant_lines = [line for line in script.splitlines() if line.startswith("GRANT ")]
    assert len(grant_lines) >= 4
    for line in grant_lines:
        mutated = tmp_path / "mutated.sql"
        mutated.write_text(script.replace(line, "-- " + line))
        problems = tsql_shadow.missing(statements, tsql_shadow.Grants.from_script(mutated))
        assert problems, f"nothing the functions run needs: {line}"


def test_the_shadow_knows_what_sql_server_checks():
    grants = tsql_shadow.Grants.from_script(GRANT_SCRIPT)
    # The defect this shadow was built for: OUTPUT needs SELECT on what it returns.
    (problem,) = tsql_shadow.missing(
        ["INSERT INTO [IngestRejects] (reason) OUTPUT inserted.id VALUES (:reason)"], grants
    )
    assert problem.startswith("needs SELECT on IngestRejects(id)")
    assert tsql_shadow.missing(["SELECT [IngestRejects].reason FROM [IngestRejects]"], grants)
    assert tsql_shadow.missing(["DELETE FROM [PatientData] WHERE eid = :eid"], grants)
    ddl = tsql_shadow.missing(["CREATE TABLE x (id INTEGER)", "DROP TABLE [PatientData]"], grants)
    assert all(p.startswith("not the app's to run") for p in ddl) and len(ddl) == 2
    assert not tsql_shadow.missing(
        ["UPDATE [IngestRuns] SET status=:s WHERE [IngestRuns].id = :i", "SELECT scope_identity()"],
        grants,
    )


def test_sql_variables_must_all_be_given():
    with pytest.raises(KeyError, match="APP_IDENTITY_NAME"):
        batches(GRANT_SCRIPT.read_text(), {})
