#!/usr/bin/env bash
# After the code is published: send BlobCreated events of the uploads container to the
# bulk-import queue that bulk_import empties (infra/eventgrid.bicep), with retries and
# dead-lettering. Idempotent. A function is listed some time after its code is published:
# wait for bulk_import first, a bounded number of times, so events are not queued for a
# function that failed to publish.
# Then GET api/health with the health function's key: the first deploy proves what no local
# test can (shared/platform/health.py), and stops with what to do for each part that fails.
# Reads: AZURE_RESOURCE_GROUP, AZURE_DATA_STORAGE_ACCOUNT, AZURE_FUNCTION_APP_NAME,
# PATIENT_UPLOADS_CONTAINER. Optional: AZURE_ALERT_ACTION_GROUP_ID (the dead-letter alert's
# recipients), DEPLOY_FUNCTION_ATTEMPTS, DEPLOY_HEALTH_ATTEMPTS, DEPLOY_RETRY_PAUSE.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/azure/lib.sh
. scripts/azure/lib.sh
need az "https://learn.microsoft.com/cli/azure/install-azure-cli"
need curl "your package manager"
need python3 "https://www.python.org/downloads/"

listed() {
  az functionapp function show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
    --function-name bulk_import --query name -o tsv >/dev/null 2>&1
}
retry "${DEPLOY_FUNCTION_ATTEMPTS:-20}" "${DEPLOY_RETRY_PAUSE:-15}" "bulk_import is listed" listed ||
  fail "bulk_import is not listed on ${AZURE_FUNCTION_APP_NAME}: check the publish step's log (az functionapp log deployment show), then run: azd hooks run postdeploy"

tags=$(az group show -n "$AZURE_RESOURCE_GROUP" --query tags -o json)
az deployment group create -g "$AZURE_RESOURCE_GROUP" -n bulk-import-events \
  -f infra/eventgrid.bicep \
  -p dataStorageName="$AZURE_DATA_STORAGE_ACCOUNT" \
  uploadsContainer="$PATIENT_UPLOADS_CONTAINER" tags="$tags" \
  actionGroupId="${AZURE_ALERT_ACTION_GROUP_ID:-}" \
  --output none ||
  fail "the Event Grid subscription was not made (the reason is above); run: azd hooks run postdeploy"
echo "BlobCreated in ${AZURE_DATA_STORAGE_ACCOUNT}/${PATIENT_UPLOADS_CONTAINER} goes to the bulk-import queue"

host=$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
  --query defaultHostName -o tsv) ||
  fail "could not read ${AZURE_FUNCTION_APP_NAME}'s host name (the reason is above)"
key=$(az functionapp function keys list -g "$AZURE_RESOURCE_GROUP" \
  -n "$AZURE_FUNCTION_APP_NAME" --function-name health --query default -o tsv) ||
  fail "could not read the health function's key (the reason is above); run: azd hooks run postdeploy"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
# 200: every part answers; 503: the report says which does not. Anything else (a cold start,
# the host still loading the package) is worth another try. The key goes in a header read
# from standard input, never on a command line.
answered() {
  local code
  code=$(printf 'x-functions-key: %s\n' "$key" |
    curl -sS -H @- -o "$report" -w '%{http_code}' --max-time 120 \
      "https://${host}/api/health") || code=000
  [ "$code" = 200 ] || [ "$code" = 503 ]
}
retry "${DEPLOY_HEALTH_ATTEMPTS:-10}" "${DEPLOY_RETRY_PAUSE:-15}" "api/health answers" answered ||
  fail "https://${host}/api/health did not answer: read the app's log (az webapp log tail -g ${AZURE_RESOURCE_GROUP} -n ${AZURE_FUNCTION_APP_NAME}), then run: azd hooks run postdeploy"
python3 scripts/azure/health_report.py "$report" ||
  fail "api/health reports a part that does not work (above, with what to do); put it right, then run: azd hooks run postdeploy"
echo "done: https://${host}/api/metadata"
