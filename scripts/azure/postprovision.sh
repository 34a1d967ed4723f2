#!/usr/bin/env bash
# After provisioning: migrate the database (alembic upgrade head) and grant the Function
# app's identity its SELECT/INSERT/UPDATE (infra/sql/grant-app-user.sql), both as the
# deploying user, the server's Microsoft Entra admin, with their `az login` token
# (ops/deploy_db.py). The app's identity never runs DDL. Idempotent.
# Needs: az, Python 3.11, Microsoft ODBC Driver 18 (or 17) for SQL Server.
# Reads (azd sets them from infra/main.bicep's outputs; scripts/deploy.sh exports them):
# AZURE_RESOURCE_GROUP, AZURE_SQL_SERVER, AZURE_SQL_DATABASE, AZURE_NETWORK_ISOLATION,
# AZURE_FUNCTION_IDENTITY_NAME, AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID,
# AZURE_FUNCTION_IDENTITY_CLIENT_ID. Optional: DEPLOY_CLIENT_IP (this machine's public
# address, else asked of api.ipify.org), DEPLOY_SQL_ATTEMPTS, DEPLOY_RETRY_PAUSE.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/azure/lib.sh
. scripts/azure/lib.sh
need az "https://learn.microsoft.com/cli/azure/install-azure-cli"
for name in AZURE_RESOURCE_GROUP AZURE_SQL_SERVER AZURE_SQL_DATABASE \
  AZURE_FUNCTION_IDENTITY_NAME AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID \
  AZURE_FUNCTION_IDENTITY_CLIENT_ID; do
  [ -n "${!name:-}" ] || fail "${name} is not set: run this hook through azd, or scripts/deploy.sh"
done
python=$(deploy_python)
server_name=${AZURE_SQL_SERVER%%.*}

if [ "${AZURE_NETWORK_ISOLATION:-false}" = true ]; then
  # Azure refuses firewall rules on a server whose public access is disabled.
  echo "network isolation: no firewall rule; the SQL server answers only on its private" \
    "endpoint, so this step must run from a machine in its virtual network"
else
  # The server takes connections from Azure only: let this machine in for the length of
  # the step, and out again whatever happens.
  need curl "your package manager (or set DEPLOY_CLIENT_IP to this machine's public address)"
  my_ip=${DEPLOY_CLIENT_IP:-$(curl -fsS https://api.ipify.org)} ||
    fail "could not learn this machine's public address; set DEPLOY_CLIENT_IP"
  rule="deploy-$(whoami | tr -cd 'a-zA-Z0-9-')"
  az sql server firewall-rule create -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" \
    --start-ip-address "$my_ip" --end-ip-address "$my_ip" --output none ||
    fail "could not open the SQL firewall to ${my_ip}; check that you own ${AZURE_RESOURCE_GROUP}"
  trap 'az sql server firewall-rule delete -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" --output none' EXIT
fi

export SQL_CONNECTION_STRING="Driver={ODBC Driver 18 for SQL Server};Server=tcp:${AZURE_SQL_SERVER},1433;Database=${AZURE_SQL_DATABASE};Encrypt=yes;TrustServerCertificate=no;Connection Timeout=60;"
"$python" -m ops.deploy_db \
  --identity-name "$AZURE_FUNCTION_IDENTITY_NAME" \
  --object-id "$AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID" \
  --client-id "$AZURE_FUNCTION_IDENTITY_CLIENT_ID" \
  --attempts "${DEPLOY_SQL_ATTEMPTS:-10}" --pause "${DEPLOY_RETRY_PAUSE:-30}" ||
  fail "the database step failed (its reason is above); put it right, then run it again: azd hooks run postprovision (or scripts/deploy.sh)"

# The app roles the functions check (infra/app-roles.json), on the app registration App
# Service authentication uses, when there is one: merged with its own roles, never dropping
# one (docs/site-administrator.md says how to assign them).
if [ -n "${AUTH_CLIENT_ID:-}" ]; then
  roles_dir=$(mktemp -d)
  az ad app show --id "$AUTH_CLIENT_ID" --query appRoles --output json > "$roles_dir/existing.json" ||
    fail "could not read the app registration ${AUTH_CLIENT_ID}: you need to own it (or be an Application Administrator)"
  "$python" -m ops.app_roles "$roles_dir/existing.json" infra/app-roles.json > "$roles_dir/roles.json" ||
    fail "could not merge the app roles"
  az ad app update --id "$AUTH_CLIENT_ID" --app-roles "@$roles_dir/roles.json" ||
    fail "could not declare the app roles on ${AUTH_CLIENT_ID}: you need to own it (or be an Application Administrator)"
  rm -rf "$roles_dir"
  echo "app roles CareLineManager, CMIO and DataScientist declared on ${AUTH_CLIENT_ID}"
fi
