#!/usr/bin/env bash
# Deploy to Azure without azd, with the az CLI only: recover → provision → migrate and grant
# the database user → publish the code → subscribe bulk_import to the uploads → prove it
# with api/health. Running it again changes nothing. Signed in with `az login` as the site
# administrator.
#   AZURE_ENV_NAME=ingest-pilot AZURE_LOCATION=eastus2 EPHI_OWNER=admin@hospital.example \
#     scripts/deploy.sh
# Needs: az, Python 3.11, Microsoft ODBC Driver 18 (or 17) for SQL Server, curl.
# Optional: AUTH_CLIENT_ID, DEFAULT_FACILITY_ID, LOS_MODEL_BLOB, NETWORK_ISOLATION (true|false),
# STORAGE_SKU (Standard_GRS; Standard_GZRS where the region has availability zones),
# ALERT_EMAIL (the operator told when an alert fires), AUDITOR_PRINCIPAL_ID (the auditor's
# Reader roles), ENABLE_HIPAA_HITRUST_POLICY (true|false: the HITRUST/HIPAA initiative).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/azure/lib.sh
. scripts/azure/lib.sh
: "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (names every resource)}"
: "${AZURE_LOCATION:?set AZURE_LOCATION (a region with Flex Consumption)}"
: "${EPHI_OWNER:?set EPHI_OWNER (the site administrator UPN: the owner tag)}"
need az "https://learn.microsoft.com/cli/azure/install-azure-cli"

principal_id=$(az ad signed-in-user show --query id -o tsv) ||
  fail "not signed in: run az login as the site administrator"
principal_name=$(az ad signed-in-user show --query userPrincipalName -o tsv)

scripts/azure/preprovision.sh

echo "provisioning (infra/main.bicep)"
outputs=$(az deployment sub create -n "patient-ingest-${AZURE_ENV_NAME}" -l "$AZURE_LOCATION" \
  -f infra/main.bicep \
  -p environmentName="$AZURE_ENV_NAME" location="$AZURE_LOCATION" \
  principalId="$principal_id" principalName="$principal_name" owner="$EPHI_OWNER" \
  storageSku="${STORAGE_SKU:-Standard_GRS}" authClientId="${AUTH_CLIENT_ID:-}" \
  defaultFacilityId="${DEFAULT_FACILITY_ID:-}" losModelBlobName="${LOS_MODEL_BLOB:-}" \
  networkIsolation="${NETWORK_ISOLATION:-false}" alertEmail="${ALERT_EMAIL:-}" \
  auditorPrincipalId="${AUDITOR_PRINCIPAL_ID:-}" \
  enableHipaaHitrustPolicy="${ENABLE_HIPAA_HITRUST_POLICY:-true}" \
  --query properties.outputs -o json) ||
  fail "provisioning failed (the reason is above); put it right and run scripts/deploy.sh again"
# Every output becomes an environment variable, as azd makes them for its hooks.
eval "$(python3 -c 'import json, shlex, sys
for name, output in json.load(sys.stdin).items():
    value = output["value"]
    value = str(value).lower() if isinstance(value, bool) else str(value)
    print(f"export {name}={shlex.quote(value)}")' <<<"$outputs")"

scripts/azure/postprovision.sh

echo "publishing the function code to ${AZURE_FUNCTION_APP_NAME}"
if command -v func >/dev/null; then
  func azure functionapp publish "$AZURE_FUNCTION_APP_NAME" --python
else
  # The package azd would build: this folder less .funcignore (ops/package.py).
  workdir=$(mktemp -d)
  trap 'rm -rf "$workdir"' EXIT
  package=$workdir/app.zip
  "$(deploy_python)" -m ops.package "$package" ||
    fail "the deployment package could not be built (the reason is above)"
  az functionapp deployment source config-zip -g "$AZURE_RESOURCE_GROUP" \
    -n "$AZURE_FUNCTION_APP_NAME" --src "$package" --build-remote true --output none ||
    fail "publishing failed (the reason is above); run scripts/deploy.sh again"
fi

scripts/azure/postdeploy.sh
