#!/usr/bin/env bash
# After provisioning: migrate the database (alembic upgrade head) and grant the Function
# app's identity its SELECT/INSERT/UPDATE (infra/sql/grant-app-user.sql), both as the
# deploying user, the server's Microsoft Entra admin, with their `az login` token. The app's
# identity never runs DDL. Needs ODBC Driver 18 for SQL Server on this machine. Idempotent.
# Reads: AZURE_RESOURCE_GROUP, AZURE_SQL_SERVER, AZURE_SQL_DATABASE, AZURE_FUNCTION_APP_NAME
# (azd sets them from infra/main.bicep's outputs; scripts/deploy.sh exports them).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/bootstrap.sh >/dev/null

server_name=${AZURE_SQL_SERVER%%.*}
# The database takes connections from Azure services only: let this machine in for the
# length of the migration, and out again whatever happens.
my_ip=$(curl -fsS https://api.ipify.org)
rule="deploy-$(whoami | tr -cd 'a-zA-Z0-9-')"
az sql server firewall-rule create -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" \
   --start-ip-address "$my_ip" --end-ip-address "$my_ip" --output none
trap 'az sql server firewall-rule delete -g "$AZURE_RESOURCE_GROUP" -s "$server_name" -n "$rule" --output none' EXIT

export SQL_CONNECTION_STRING="Driver={ODBC Driver 18 for SQL Server};Server=tcp:${AZURE_SQL_SERVER},1433;Database=${AZURE_SQL_DATABASE};Encrypt=yes;TrustServerCertificate=no;Connection Timeout=60;"
echo "migrating ${AZURE_SQL_DATABASE} (alembic upgrade head)"
.venv/bin/alembic upgrade head
echo "granting ${AZURE_FUNCTION_APP_NAME} its rights (infra/sql/grant-app-user.sql)"
.venv/bin/python -m devtools.sql_script infra/sql/grant-app-user.sql \
   --var "APP_IDENTITY_NAME=${AZURE_FUNCTION_APP_NAME}"
