// Two accounts, so the app’s identity gets broad rights only where the platform needs them:
// - host: the Functions host’s own storage (deployment package, leases), where Flex
//   Consumption needs the identity to own blobs;
// - data: the uploads (read only by the app), the Event Grid dead letters, the models, an
//   export's shards while it is imported in ranges, and
//   the import queue Event Grid fills and bulk_import empties (with its poison queue).
// Both: no shared keys, no public blobs, TLS 1.2, infrastructure encryption, soft delete.
param location string
param tags object
param resourceToken string
param uploadsContainer string
param sku string
param uploadRetentionDays int
param deadLetterRetentionDays int
param networkIsolation bool
param subnetId string
param dnsZoneId string
param queueDnsZoneId string
param workspaceId string

var deploymentContainer = 'app-package'
var accounts = [
  'st${take(resourceToken, 18)}host'
  'st${take(resourceToken, 18)}data'
]

// With networkIsolation, the host account takes no public traffic at all; the data account
// keeps public network access 'Enabled' but its firewall denies every address and network
// (defaultAction Deny, no IP or VNet rule), so it is reached through its private endpoints,
// plus the trusted-services exception. That exception is how Event Grid's system topic
// delivers to the bulk-import queue and dead-letters with its system-assigned identity, the
// configuration "Storage queue as an event handler for Azure Event Grid events" documents
// for a firewalled account; with access 'Disabled' no rule, the exception included, is
// evaluated (Azure Policy "Storage accounts should disable public network access").
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = [
  for (name, i) in accounts: {
    // checkov:skip=CKV_AZURE_35: the firewall denies by default only with networkIsolation; without a VNet the Functions host (not a trusted service) could not reach it
    // checkov:skip=CKV_AZURE_59: with networkIsolation the host account's public access is off and the data account's firewall denies every address (Event Grid reaches it as a trusted service); without it, a parameter off by default: see docs/site-administrator.md
    // checkov:skip=CKV_AZURE_206: the SKU is a parameter whose every allowed value replicates (main.bicep: ZRS, GRS, GZRS, RA-GRS, RA-GZRS; never LRS)
    // checkov:skip=CKV_AZURE_43: the name is computed: “st” + 13 lowercase letters and digits + “host” or “data” (19 characters)
    name: name
    location: location
    tags: tags
    kind: 'StorageV2'
    sku: { name: sku } // a parameter: zone redundancy exists only in regions with zones
    properties: {
      accessTier: 'Hot'
      allowSharedKeyAccess: false // identities only: no account keys, no SAS signed with them
      allowBlobPublicAccess: false
      allowCrossTenantReplication: false
      defaultToOAuthAuthentication: true
      minimumTlsVersion: 'TLS1_2'
      supportsHttpsTrafficOnly: true
      publicNetworkAccess: (networkIsolation && i == 0) ? 'Disabled' : 'Enabled'
      networkAcls: {
        defaultAction: networkIsolation ? 'Deny' : 'Allow'
        bypass: 'AzureServices'
        ipRules: []
        virtualNetworkRules: []
      }
      encryption: {
        requireInfrastructureEncryption: true // a second layer of encryption at rest
        keySource: 'Microsoft.Storage'
        services: {
          blob: { enabled: true, keyType: 'Account' }
          file: { enabled: true, keyType: 'Account' }
          queue: { enabled: true, keyType: 'Account' }
          table: { enabled: true, keyType: 'Account' }
        }
      }
    }
  }
]

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = [
  for (name, i) in accounts: {
    parent: account[i]
    name: 'default'
    properties: {
      deleteRetentionPolicy: { enabled: true, days: 30 }
      containerDeleteRetentionPolicy: { enabled: true, days: 30 }
      isVersioningEnabled: true
    }
  }
]

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs[0]
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource uploads 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs[1]
  name: uploadsContainer
  properties: { publicAccess: 'None' }
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs[1]
  name: 'deadletter'
  properties: { publicAccess: 'None' }
}

resource models 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs[1]
  name: 'models'
  properties: { publicAccess: 'None' }
}

// An FHIR export imported in ranges: its resources by patient, one folder per run, written
// by the first pass and read by the ranges (shared/bulk/export/shards.py); ePHI, so deleted
// when the run settles, and by the retention rule below when a failed run is never replayed.
resource exportShards 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs[1]
  name: 'export-shards'
  properties: { publicAccess: 'None' }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account[1]
  name: 'default'
}

// BlobCreated events and the ranges of large files (ids only, never patient data); the
// host moves a message that failed five times (host.json) to the poison queue.
resource importQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: 'bulk-import'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: 'bulk-import-poison'
}

// PHI is kept no longer than it is needed: uploads (an import can be re-run meanwhile), dead
// letters and an export's shards (an operator can replay them meanwhile) are deleted after
// their retention,
// their earlier versions and snapshots with them; soft delete then keeps them 30 more days.
resource retention 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account[1]
  name: 'default'
  properties: {
    policy: {
      rules: [
        for rule in [
          { name: 'uploads', prefix: '${uploadsContainer}/', days: uploadRetentionDays }
          { name: 'deadletters', prefix: 'deadletter/', days: deadLetterRetentionDays }
          // A failed run's shards wait for its poisoned ranges' replay as long as a dead letter.
          { name: 'exportshards', prefix: 'export-shards/', days: deadLetterRetentionDays }
        ]: {
          name: 'delete-${rule.name}'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: [rule.prefix] }
            actions: {
              baseBlob: { delete: { daysAfterCreationGreaterThan: rule.days } }
              version: { delete: { daysAfterCreationGreaterThan: rule.days } }
              snapshot: { delete: { daysAfterCreationGreaterThan: rule.days } }
            }
          }
        }
      ]
    }
  }
}

// Who read or wrote which blob, kept with the other audit records.
resource dataBlobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-audit'
  scope: blobs[1]
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageRead', enabled: true }
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

// Who sent, took or deleted which import message.
resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-audit'
  scope: queues
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageRead', enabled: true }
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

resource endpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = [
  for (name, i) in (networkIsolation ? accounts : []): {
    name: 'pe-${name}-blob'
    location: location
    tags: tags
    properties: {
      subnet: { id: subnetId }
      privateLinkServiceConnections: [
        {
          name: 'blob'
          properties: { privateLinkServiceId: account[i].id, groupIds: ['blob'] }
        }
      ]
    }
  }
]

resource dns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [
  for (name, i) in (networkIsolation ? accounts : []): {
    parent: endpoint[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [{ name: 'zone', properties: { privateDnsZoneId: dnsZoneId } }]
    }
  }
]

output hostAccountName string = account[0].name
output dataAccountName string = account[1].name
// The data account's queue endpoint: the functions reach the import queue only through it.
resource queueEndpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = if (networkIsolation) {
  name: 'pe-${accounts[1]}-queue'
  location: location
  tags: tags
  properties: {
    subnet: { id: subnetId }
    privateLinkServiceConnections: [
      {
        name: 'queue'
        properties: { privateLinkServiceId: account[1].id, groupIds: ['queue'] }
      }
    ]
  }
}

resource queueDns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = if (networkIsolation) {
  parent: queueEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [{ name: 'zone', properties: { privateDnsZoneId: queueDnsZoneId } }]
  }
}

output dataBlobEndpoint string = account[1].properties.primaryEndpoints.blob
output dataQueueEndpoint string = account[1].properties.primaryEndpoints.queue
output deploymentContainer string = '${account[0].properties.primaryEndpoints.blob}${deploymentContainer}'
