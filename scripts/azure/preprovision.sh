#!/usr/bin/env bash
# Before provisioning. Idempotent.
# - A Key Vault of this environment left soft-deleted by `azd down` is recovered: purge
#   protection keeps its name taken for 90 days, so provisioning could not make it again.
#   `azd down` deleted its resource group too, and a vault is recovered into the group it
#   was in: that group is made again first (provisioning then tags it in full). A vault
#   whose retention ran out is gone: nothing to recover, provisioning makes a new one.
# - With NETWORK_ISOLATION=true, the Microsoft.App resource provider is registered: VNet
#   integration on Flex Consumption needs it.
# Reads: AZURE_ENV_NAME, AZURE_LOCATION, EPHI_OWNER and NETWORK_ISOLATION (optional).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/azure/lib.sh
. scripts/azure/lib.sh
need az "https://learn.microsoft.com/cli/azure/install-azure-cli"
: "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (azd sets it)}"

deleted=$(az keyvault list-deleted --resource-type vault \
  --query "[?properties.tags.\"azd-env-name\"=='${AZURE_ENV_NAME}'].[name, properties.vaultId, properties.location]" \
  -o tsv) ||
  fail "could not list deleted Key Vaults; check \`az login\` and the subscription (az account show)"
while IFS=$'\t' read -r vault vault_id vault_location; do
  [ -n "$vault" ] || continue
  # The vault's name is made from the location too: one deleted elsewhere is in no one's way.
  if [ -n "${AZURE_LOCATION:-}" ] && [ "${vault_location// /}" != "${AZURE_LOCATION// /}" ]; then
    continue
  fi
  group=$(sed -n 's|.*/resourceGroups/\([^/]*\)/.*|\1|p' <<<"$vault_id")
  [ -n "$group" ] || fail "Key Vault ${vault}: its resource id names no resource group (${vault_id})"
  if [ "$(az group exists -n "$group")" != true ]; then
    echo "making resource group ${group} again (deleted by azd down) to recover ${vault} into"
    az group create -n "$group" -l "$vault_location" \
      --tags "azd-env-name=${AZURE_ENV_NAME}" dataProfile=ePHI ${EPHI_OWNER:+"owner=${EPHI_OWNER}"} \
      --output none ||
      fail "could not make resource group ${group}: you need Contributor on the subscription"
  fi
  echo "recovering Key Vault ${vault}, soft-deleted by an earlier azd down"
  az keyvault recover --name "$vault" --output none ||
    fail "could not recover Key Vault ${vault}: you need Key Vault Contributor on the subscription, or choose another AZURE_ENV_NAME"
done <<<"$deleted"

if [ "${NETWORK_ISOLATION:-false}" = true ]; then
  echo "registering the Microsoft.App resource provider (VNet integration on Flex Consumption)"
  az provider register --namespace Microsoft.App --wait --output none ||
    fail "could not register Microsoft.App: a subscription Contributor must run: az provider register --namespace Microsoft.App"
fi
