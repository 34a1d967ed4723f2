// Azure SQL: Microsoft Entra authentication only (no SQL logins, no passwords anywhere),
// TLS 1.2, auditing to Log Analytics, Microsoft Defender for SQL as a parameter. Serverless:
// it pauses when idle, which is most of a pilot’s day.
param location string
param tags object
param resourceToken string
param adminObjectId string
param adminName string
param adminType string
param workspaceId string
param enableDefender bool
param networkIsolation bool
param subnetId string
param dnsZoneId string

var databaseName = 'patientdb'

resource server 'Microsoft.Sql/servers@2023-08-01-preview' = {
  // checkov:skip=CKV_AZURE_113: public network access is off with networkIsolation (a parameter, off by default: see docs/site-administrator.md); Entra-only auth and TLS 1.2 guard the endpoint
  // checkov:skip=CKV_AZURE_24: audit records go to Log Analytics, whose AzureDiagnostics table keeps them six years (infra/modules/monitoring.bicep); retentionDays applies to a storage-account target only
  // checkov:skip=CKV_AZURE_25: threat detection is enabled for all threat types (securityAlertPolicies below, no disabledAlerts) when enableDefenderForSql
  name: 'sql-${resourceToken}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminName
      sid: adminObjectId
      principalType: adminType
      tenantId: subscription().tenantId
    }
  }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01-preview' = {
  // checkov:skip=CKV_AZURE_23: auditing is set on the server (auditingSettings below), which covers every database
  // checkov:skip=CKV_AZURE_25: threat detection is set on the server, which covers every database
  // checkov:skip=CKV_AZURE_26: alerts go to the subscription’s admins and owners (emailAccountAdmins on the server policy)
  parent: server
  // checkov:skip=CKV_AZURE_27: set on the server’s security alert policy (emailAccountAdmins), which covers every database
  // checkov:skip=CKV_AZURE_229: zone redundancy roughly doubles a serverless database’s cost; backups are geo-redundant
  name: databaseName
  location: location
  tags: tags
  sku: { name: 'GP_S_Gen5_1', tier: 'GeneralPurpose' }
  properties: {
    autoPauseDelay: 60
    minCapacity: json('0.5')
    zoneRedundant: false
    requestedBackupStorageRedundancy: 'Geo'
  }
}

// Without network isolation the app reaches SQL over its public endpoint (Flex Consumption
// has no fixed outbound addresses); Entra-only authentication and TLS guard it. This rule
// admits Azure services only, not the internet.
resource azureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01-preview' = if (!networkIsolation) {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
}

resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01-preview' = {
  parent: server
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 0 // kept by the workspace (six years: monitoring.bicep), not by a storage account
    auditActionsAndGroups: [
      'SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP'
      'FAILED_DATABASE_AUTHENTICATION_GROUP'
      'BATCH_COMPLETED_GROUP'
    ]
  }
}

// Server audit records travel through the master database’s diagnostic setting.
resource master 'Microsoft.Sql/servers/databases@2023-08-01-preview' existing = {
  // checkov:skip=CKV_AZURE_23: not deployed here (an existing reference for the diagnostic setting); the server’s auditing covers it
  // checkov:skip=CKV_AZURE_25: not deployed here; the server’s threat detection covers it
  parent: server
  name: 'master'
}

resource auditToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'sql-audit'
  scope: master
  properties: {
    workspaceId: workspaceId
    logs: [{ category: 'SQLSecurityAuditEvents', enabled: true }]
  }
}

resource defender 'Microsoft.Sql/servers/securityAlertPolicies@2023-08-01-preview' = if (enableDefender) {
  parent: server
  name: 'Default'
  properties: { state: 'Enabled', emailAccountAdmins: true }
}

resource sqlVulnerabilityAssessment 'Microsoft.Sql/servers/sqlVulnerabilityAssessments@2023-08-01-preview' = if (enableDefender) {
  parent: server
  name: 'default'
  properties: { state: 'Enabled' }
  dependsOn: [defender]
}

resource endpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = if (networkIsolation) {
  name: 'pe-${server.name}'
  location: location
  tags: tags
  properties: {
    subnet: { id: subnetId }
    privateLinkServiceConnections: [
      {
        name: 'sqlServer'
        properties: { privateLinkServiceId: server.id, groupIds: ['sqlServer'] }
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

output serverFqdn string = server.properties.fullyQualifiedDomainName
output serverName string = server.name
output databaseName string = database.name
