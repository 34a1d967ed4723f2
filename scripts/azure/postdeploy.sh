#!/usr/bin/env bash
# After the code is published: subscribe bulk_import to BlobCreated events of the uploads
# container (infra/eventgrid.bicep), with retries and dead-lettering. Idempotent.
# Reads: AZURE_RESOURCE_GROUP, AZURE_DATA_STORAGE_ACCOUNT, AZURE_FUNCTION_APP_NAME,
# PATIENT_UPLOADS_CONTAINER.
set -euo pipefail
cd "$(dirname "$0")/../.."
tags=$(az group show -n "$AZURE_RESOURCE_GROUP" --query tags -o json)
az deployment group create -g "$AZURE_RESOURCE_GROUP" -n bulk-import-events \
   -f infra/eventgrid.bicep \
   -p dataStorageName="$AZURE_DATA_STORAGE_ACCOUNT" functionAppName="$AZURE_FUNCTION_APP_NAME" \
      uploadsContainer="$PATIENT_UPLOADS_CONTAINER" tags="$tags" \
   --output none
echo "bulk_import subscribed to BlobCreated in ${AZURE_DATA_STORAGE_ACCOUNT}/${PATIENT_UPLOADS_CONTAINER}"
