// BlobCreated events of the uploads container → the bulk-import queue → bulk_import (a queue
// trigger: no 30-second answer to give Event Grid, however long the import). Deployed after
// the code (azd’s postdeploy hook, or scripts/deploy.sh), once the function that empties the
// queue exists. Resource-group scope.
param location string = resourceGroup().location
param dataStorageName string
param uploadsContainer string = 'patient-uploads'
param tags object
@description('The operators\' action group (main.bicep\'s AZURE_ALERT_ACTION_GROUP_ID); empty: the alert fires in the portal only.')
param actionGroupId string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${dataStorageName}/default/deadletter'
}

var importQueueName = 'bulk-import' // shared/platform/queues.py: IMPORT_QUEUE

resource importQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  name: '${dataStorageName}/default/${importQueueName}'
}

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'evgt-${dataStorageName}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // delivers and dead-letters without an account key
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

// Why: Event Grid puts each BlobCreated event on the import queue, and on no other queue; it
// reads nothing.
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(importQueue.id, topic.id, storageQueueDataMessageSender)
  scope: importQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Event Grid writes events it could not deliver to the dead-letter container, and only
// there.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, topic.id, storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource toBulkImport 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'bulk-import'
  dependsOn: [deadLetterWriter, queueSender]
  properties: {
    // A Storage queue destination, delivered with the topic's own identity: no key, no
    // webhook URL; one event a message, kept 7 days if bulk_import is down.
    deliveryWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: storage.id
          queueName: importQueueName
          queueMessageTimeToLiveInSeconds: 604800
        }
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${uploadsContainer}/blobs/'
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: storage.id, blobContainerName: 'deadletter' }
      }
    }
  }
}

// Events Event Grid gave up on (30 attempts, 24 hours) are in the deadletter container: the
// files they name were never imported. docs/operator.md replays them.
resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-dead-lettered-${dataStorageName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'BlobCreated events were dead-lettered. See docs/operator.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [topic.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: empty(actionGroupId) ? [] : [{ actionGroupId: actionGroupId }]
  }
}
