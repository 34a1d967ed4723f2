// Key Vault: RBAC authorization (no access policies), soft delete and purge protection. It
// holds one secret, the SQL connection string, and that string is passwordless: the app
// connects with its managed identity’s Microsoft Entra token.
param location string
param tags object
param resourceToken string
param secretName string
param sqlServerFqdn string
param sqlDatabaseName string
param workspaceId string
param networkIsolation bool
param subnetId string
param dnsZoneId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the firewall denies by default only with networkIsolation; without a VNet the Function app (not a trusted service) could not read its secret
  // checkov:skip=CKV_AZURE_189: public network access is off with networkIsolation (a parameter, off by default: see docs/site-administrator.md)
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource sqlConnection 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the value holds no credential (Entra token auth), so nothing in it expires; an expiry would only stop the app
  parent: vault
  name: secretName
  tags: tags
  properties: {
    contentType: 'ODBC connection string (no credentials: Microsoft Entra token of the app)'
    value: 'Driver={ODBC Driver 18 for SQL Server};Server=tcp:${sqlServerFqdn},1433;Database=${sqlDatabaseName};Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30;'
  }
}

resource vaultLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'vault-audit'
  scope: vault
  properties: {
    workspaceId: workspaceId
    // Its own table (AZKVAuditLogs), kept six years: infra/modules/monitoring.bicep.
    logAnalyticsDestinationType: 'Dedicated'
    logs: [{ categoryGroup: 'audit', enabled: true }]
  }
}

resource endpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = if (networkIsolation) {
  name: 'pe-${vault.name}'
  location: location
  tags: tags
  properties: {
    subnet: { id: subnetId }
    privateLinkServiceConnections: [
      {
        name: 'vault'
        properties: { privateLinkServiceId: vault.id, groupIds: ['vault'] }
      }
    ]
  }
}

resource dns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = if (networkIsolation) {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [{ name: 'zone', properties: { privateDnsZoneId: dnsZoneId } }]
  }
}

output name string = vault.name
output vaultUri string = vault.properties.vaultUri
