#!/usr/bin/env bash
# Before provisioning. Idempotent.
# - A Key Vault of this environment left soft-deleted by `azd down` is recovered: purge
#   protection keeps its name taken for 90 days, so provisioning could not make it again.
# - With NETWORK_ISOLATION=true, the Microsoft.App resource provider is registered: VNet
#   integration on Flex Consumption needs it.
# Reads: AZURE_ENV_NAME, NETWORK_ISOLATION (optional).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/azure/lib.sh
. scripts/azure/lib.sh
need az "https://learn.microsoft.com/cli/azure/install-azure-cli"
: "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (azd sets it)}"

deleted=$(az keyvault list-deleted --resource-type vault \
  --query "[?properties.tags.\"azd-env-name\"=='${AZURE_ENV_NAME}'].name" -o tsv) ||
  fail "could not list deleted Key Vaults; check \`az login\` and the subscription (az account show)"
for vault in $deleted; do
  echo "recovering Key Vault ${vault}, soft-deleted by an earlier azd down"
  az keyvault recover --name "$vault" --output none ||
    fail "could not recover Key Vault ${vault}: you need Key Vault Contributor on the subscription, or choose another AZURE_ENV_NAME"
done

if [ "${NETWORK_ISOLATION:-false}" = true ]; then
  echo "registering the Microsoft.App resource provider (VNet integration on Flex Consumption)"
  az provider register --namespace Microsoft.App --wait --output none ||
    fail "could not register Microsoft.App: a subscription Contributor must run: az provider register --namespace Microsoft.App"
fi
