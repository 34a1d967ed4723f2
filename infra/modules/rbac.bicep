// Role assignments: the Function app identity's, and those of the people and systems the
// README sends to the data plane (each optional). Each is the narrowest role at the narrowest
// scope that lets it work; nothing else is granted (tests/test_infra.py checks the list).
param appPrincipalId string
param hostStorageName string
param dataStorageName string
param uploadsContainer string
param keyVaultName string
param sqlSecretName string
param applicationInsightsName string
param uploaderPrincipalId string
param modelPublisherPrincipalId string
param secretOfficerPrincipalId string
param operatorPrincipalId string
param auditorPrincipalId string
param workspaceName string

var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  storageQueueDataMessageProcessor: '8a0f0c08-91a1-4084-bc3d-661d67233fed'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource sqlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: sqlSecretName
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/deadletter'
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource uploads 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/${uploadsContainer}'
}

resource models 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/models'
}

resource exportShards 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/export-shards'
}

resource importQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  name: '${dataStorageName}/default/bulk-import'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  name: '${dataStorageName}/default/bulk-import-poison'
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Why: the app reads the SQL connection string, its only secret, and no other; it never
// writes secrets.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sqlSecret.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: sqlSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: bulk_import reads the uploaded CSV; it never writes or deletes an upload.
resource uploadsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploads.id, appPrincipalId, roles.storageBlobDataReader)
  scope: uploads
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: bulk_import's queue trigger peeks at the import queue and the scale controller reads
// its length (messages hold ids, never patient data).
resource queueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(importQueue.id, appPrincipalId, roles.storageQueueDataReader)
  scope: importQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: the trigger takes messages from the import queue and deletes them once imported.
resource queueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(importQueue.id, appPrincipalId, roles.storageQueueDataMessageProcessor)
  scope: importQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageProcessor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: a large file's ranges go back on the import queue, one message each, for any
// instance to take.
resource rangeSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(importQueue.id, appPrincipalId, roles.storageQueueDataMessageSender)
  scope: importQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: the host moves a message that failed five times to the poison queue (it creates
// nothing: infra/modules/storage.bicep made the queue).
resource poisonSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, appPrincipalId, roles.storageQueueDataMessageSender)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: scoring reads the champion pointer and the model it names (LOS_MODEL_URL), and
// retrain_model writes new model versions and moves the pointer: in the models container
// (no patient data: trees and cards of aggregate metrics), and nowhere else.
resource modelsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(models.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: models
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: bulk_import writes an export's shards in its first pass, reads one per range and
// deletes a run's shards when it settles: in the export-shards container only (the uploads
// stay read-only to the app).
resource exportShardsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportShards.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: exportShards
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Flex Consumption’s host runs from a package in its own storage account and keeps
// leases and keys there; it needs to own blobs in that account (and only that one: no
// patient data is stored in it).
resource hostOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Application Insights accepts only Entra-authenticated telemetry (local auth is off).
resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- people and systems (each only when its principal id is given) --------------------

// Why: the EHR's or ETL's identity uploads files to import; it reads nothing else.
resource uploader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(uploaderPrincipalId)) {
  name: guid(uploads.id, uploaderPrincipalId, roles.storageBlobDataContributor)
  scope: uploads
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: uploaderPrincipalId
  }
}

// Why: the data scientist (or pipeline) publishes models and cards; no patient data.
resource modelPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(modelPublisherPrincipalId)) {
  name: guid(models.id, modelPublisherPrincipalId, roles.storageBlobDataContributor)
  scope: models
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: modelPublisherPrincipalId
  }
}

// Why: the site administrator rotates the SQL connection secret; only that secret.
resource secretOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretOfficerPrincipalId)) {
  name: guid(sqlSecret.id, secretOfficerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: sqlSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: secretOfficerPrincipalId
  }
}

// Why: the operator reads dead-lettered events to replay them (the events name blobs; they
// hold no patient data).
resource operator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(deadLetters.id, operatorPrincipalId, roles.storageBlobDataReader)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: operatorPrincipalId
  }
}

// Why: the operator takes poisoned import messages off the poison queue to replay them (ids
// of runs and ranges; no patient data) ...
resource operatorPoison 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(poisonQueue.id, operatorPrincipalId, roles.storageQueueDataMessageProcessor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageProcessor)
    principalId: operatorPrincipalId
  }
}

// Why: ... and puts them back on the import queue once the cause is fixed.
resource operatorReplay 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(importQueue.id, operatorPrincipalId, roles.storageQueueDataMessageSender)
  scope: importQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: operatorPrincipalId
  }
}

// Why: the auditor sees every resource's settings, its role assignments and the policy
// initiative's findings; Reader holds no data action, so no blob, message, secret or row.
resource auditorReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(auditorPrincipalId)) {
  name: guid(resourceGroup().id, auditorPrincipalId, roles.reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.reader)
    principalId: auditorPrincipalId
  }
}

// Why: ... and queries the audit records kept six years in the workspace (SQL auditing, Key
// Vault, storage, the app's traces and requests: ids and reasons, never patient data).
resource auditorLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(auditorPrincipalId)) {
  name: guid(workspace.id, auditorPrincipalId, roles.logAnalyticsReader)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
    principalId: auditorPrincipalId
  }
}
