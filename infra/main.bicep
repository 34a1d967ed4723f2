// The patient ingest tier on Azure: Function app (Flex Consumption), its storage, Event Grid,
// Key Vault, Azure SQL and monitoring, every resource tagged like the rows it stores.
// Deployed by `azd up` (azure.yaml) or scripts/deploy.sh. The Event Grid subscription is in
// eventgrid.bicep: it needs the bulk_import function to exist, so it is deployed after the code.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd env); it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (a region that offers Flex Consumption).')
param location string

@description('Object id of the user or group that becomes the Azure SQL Microsoft Entra admin (the deploying site administrator).')
param principalId string

@description('Display name or UPN of that SQL admin principal.')
param principalName string

@allowed(['User', 'Group'])
param principalType string = 'User'

@description('ePHI tags: on every resource and every PatientData row.')
param dataProfile string = 'ePHI'
@description('The site administrator\'s UPN: the owner tag.')
param owner string
param environmentTag string = 'Pilot'
param department string = 'Global Ecosystem'

@description('Redundancy of both storage accounts. Standard_GRS works in every region; choose Standard_GZRS where the region has availability zones (zone-redundant plus a copy in the paired region).')
@allowed(['Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_GRS'

@description('Days an uploaded file (and its versions and soft-deleted copies) is kept after upload: long enough to re-run an import, short enough not to keep a second copy of ePHI forever.')
@minValue(1)
param uploadRetentionDays int = 30
@description('Days an Event Grid dead letter is kept: long enough for an operator to replay it.')
@minValue(1)
param deadLetterRetentionDays int = 30

@description('Optional: object id of the EHR or ETL identity that uploads files (Storage Blob Data Contributor on the uploads container only).')
param uploaderPrincipalId string = ''
@description('Optional: object id of the data scientist or pipeline that publishes models (Storage Blob Data Contributor on the models container only).')
param modelPublisherPrincipalId string = ''
@description('Optional: object id of who rotates the SQL connection secret (Key Vault Secrets Officer on that one secret).')
param secretOfficerPrincipalId string = ''
@description('Optional: object id of the operator who reads and replays dead letters (Storage Blob Data Reader on the dead-letter container only).')
param operatorPrincipalId string = ''

@description('Optional: object id of the auditor (Reader on the resource group, Log Analytics Reader on the workspace: settings, role assignments and audit records; no data-plane role, so no patient data).')
param auditorPrincipalId string = ''

@description('Assign Azure Policy\'s built-in HITRUST/HIPAA regulatory-compliance initiative to the resource group, so Defender for Cloud\'s regulatory-compliance view measures exactly this deployment. Off where the subscription or management group already assigns it.')
param enableHipaaHitrustPolicy bool = true
@description('Days the audit records (SQL auditing, Key Vault, storage, the app\'s traces and requests) are kept in all: HIPAA\'s six years at least.')
@minValue(2190)
param auditRetentionDays int = 2190

@description('Client id of the Microsoft Entra app registration for App Service authentication. Empty: function keys instead (AUTH_MODE=function).')
param authClientId string = ''
@description('App roles allowed to admit and discharge (with App Service authentication).')
param careRoles string = 'CareLineManager'

@description('JSON object: Organization id, identifier or name -> facility letter.')
param facilityIds string = '{}'
@description('Facility of an admission whose serviceProvider maps to none; empty refuses it (422).')
param defaultFacilityId string = ''
@description('Name of the published length-of-stay model in the models container; empty: no predictions.')
param losModelBlobName string = ''

@description('Email of the operator told when the audit trail has a hole (alert rules); empty: the alerts show in the portal only.')
param alertEmail string = ''

@description('Microsoft Defender for SQL (about USD 15 per server per month).')
param enableDefenderForSql bool = true
@description('VNet integration and private endpoints for storage, Key Vault and SQL (see docs/site-administrator.md: cost and trade-off).')
param networkIsolation bool = false

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
// The blueprint’s ePHI tags, on every resource (and the same values on every stored row).
var tags = {
  dataProfile: dataProfile
  owner: owner
  environment: environmentTag
  department: department
  'azd-env-name': environmentName
}
var uploadsContainer = 'patient-uploads'
var sqlSecretName = 'patient-db-connection-string'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    alertEmail: alertEmail
    auditRetentionDays: auditRetentionDays
  }
}

module policy 'modules/policy.bicep' = if (enableHipaaHitrustPolicy) {
  name: 'policy'
  scope: rg
  params: {
    location: location
    resourceToken: resourceToken
  }
}

module network 'modules/network.bicep' = if (networkIsolation) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    uploadsContainer: uploadsContainer
    sku: storageSku
    uploadRetentionDays: uploadRetentionDays
    deadLetterRetentionDays: deadLetterRetentionDays
    networkIsolation: networkIsolation
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    dnsZoneId: networkIsolation ? network.outputs.blobZoneId : ''
    queueDnsZoneId: networkIsolation ? network.outputs.queueZoneId : ''
    workspaceId: monitoring.outputs.workspaceId
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    adminObjectId: principalId
    adminName: principalName
    adminType: principalType
    workspaceId: monitoring.outputs.workspaceId
    enableDefender: enableDefenderForSql
    networkIsolation: networkIsolation
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    dnsZoneId: networkIsolation ? network.outputs.sqlZoneId : ''
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    secretName: sqlSecretName
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    workspaceId: monitoring.outputs.workspaceId
    networkIsolation: networkIsolation
    subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
    dnsZoneId: networkIsolation ? network.outputs.vaultZoneId : ''
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    hostStorageName: storage.outputs.hostAccountName
    deploymentContainer: storage.outputs.deploymentContainer
    dataBlobEndpoint: storage.outputs.dataBlobEndpoint
    dataQueueEndpoint: storage.outputs.dataQueueEndpoint
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.vaultUri
    sqlSecretName: sqlSecretName
    uploadsContainer: uploadsContainer
    ephiTags: {
      dataProfile: dataProfile
      owner: owner
      environment: environmentTag
      department: department
    }
    authClientId: authClientId
    careRoles: careRoles
    facilityIds: facilityIds
    defaultFacilityId: defaultFacilityId
    losModelUrl: empty(losModelBlobName) ? '' : '${storage.outputs.dataBlobEndpoint}models/${losModelBlobName}'
    subnetId: networkIsolation ? network.outputs.appSubnetId : ''
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: functionApp.outputs.principalId
    hostStorageName: storage.outputs.hostAccountName
    dataStorageName: storage.outputs.dataAccountName
    uploadsContainer: uploadsContainer
    keyVaultName: keyVault.outputs.name
    sqlSecretName: sqlSecretName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    uploaderPrincipalId: uploaderPrincipalId
    modelPublisherPrincipalId: modelPublisherPrincipalId
    secretOfficerPrincipalId: secretOfficerPrincipalId
    operatorPrincipalId: operatorPrincipalId
    auditorPrincipalId: auditorPrincipalId
    workspaceName: monitoring.outputs.workspaceName
  }
}

// What azd and scripts/deploy.sh need next; no secret, key or connection string among them.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
// The app's database user: named after its identity, bound to the identity's object id.
output AZURE_FUNCTION_IDENTITY_NAME string = functionApp.outputs.identityName
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = functionApp.outputs.principalId
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = functionApp.outputs.clientId
output AZURE_NETWORK_ISOLATION bool = networkIsolation
output AZURE_DATA_STORAGE_ACCOUNT string = storage.outputs.dataAccountName
output AZURE_SQL_SERVER string = sql.outputs.serverFqdn
output AZURE_SQL_DATABASE string = sql.outputs.databaseName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output PATIENT_UPLOADS_CONTAINER string = uploadsContainer
// The operators' action group ('' without ALERT_EMAIL): the Event Grid deployment's
// dead-letter alert notifies it too.
output AZURE_ALERT_ACTION_GROUP_ID string = monitoring.outputs.actionGroupId
