// The Function app: Linux, Python 3.11, Flex Consumption, a user-assigned identity for
// storage, Key Vault and SQL (as Azure's azd Functions templates do: the identity outlives
// the app, so a recreated app keeps its database user), HTTPS only, TLS 1.2, no FTP or basic
// publishing credentials, host storage reached by identity (no account key). Its app
// settings are exactly what shared/platform/settings.py reads, less the local-only ones
// (tests/test_infra.py keeps the two in step). Elastic Premium is not offered: with shared
// keys off it would need an Azure Files content share, which has no identity-based access.
param location string
param tags object
param resourceToken string
param hostStorageName string
param deploymentContainer string
param dataBlobEndpoint string
param dataQueueEndpoint string
param applicationInsightsName string
param keyVaultUri string
param sqlSecretName string
param uploadsContainer string
param ephiTags object
param authClientId string
param careRoles string
param facilityIds string
param defaultFacilityId string
param losModelUrl string
param subnetId string

var easyAuth = !empty(authClientId)

// The app's identity: storage, Key Vault and SQL know it by this; deleting and recreating
// the Function app does not change it.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: tags
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a Flex Consumption plan has no zone-redundancy setting of this form
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true } // Linux
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: EHRs call admit/discharge over the internet; callers authenticate (Entra ID or function keys) over TLS 1.2
  // checkov:skip=CKV_AZURE_17: callers authenticate with Entra ID tokens or function keys, not client certificates
  // checkov:skip=CKV_AZURE_212: a consumption plan scales from zero
  // checkov:skip=CKV_AZURE_213: App Service health checks do not apply to Flex Consumption; Application Insights watches availability
  name: 'func-${resourceToken}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled' // EHRs call admit/discharge over the internet (authenticated)
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainer
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: { instanceMemoryMB: 2048, maximumInstanceCount: 40 }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      httpLoggingEnabled: true
      detailedErrorLoggingEnabled: true // logged on the platform, never sent to callers
      requestTracingEnabled: true
      remoteDebuggingEnabled: false
      appSettings: [
        // The Functions host: identity-based storage, Entra-authenticated telemetry.
        { name: 'AzureWebJobsStorage__accountName', value: hostStorageName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        // azure-identity's DefaultAzureCredential picks the user-assigned identity by this.
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsights.properties.ConnectionString }
        // Entra-authenticated telemetry as the user-assigned identity: without its client id
        // the host would ask for a system-assigned identity the app does not have, and
        // Application Insights (local auth off) would refuse every trace and request.
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        // Ours (shared/platform/settings.py): no secret among them.
        { name: 'PATIENT_STORAGE_ACCOUNT_URL', value: dataBlobEndpoint }
        // bulk_import's queue trigger (and the ranges it sends) through the same identity.
        { name: 'PATIENT_STORAGE_CONNECTION__queueServiceUri', value: dataQueueEndpoint }
        { name: 'PATIENT_STORAGE_CONNECTION__credential', value: 'managedidentity' }
        { name: 'PATIENT_STORAGE_CONNECTION__clientId', value: identity.properties.clientId }
        { name: 'PATIENT_UPLOADS_CONTAINER', value: uploadsContainer }
        { name: 'KEY_VAULT_URL', value: keyVaultUri }
        { name: 'SQL_CONNECTION_SECRET_NAME', value: sqlSecretName }
        { name: 'SECRET_CACHE_SECONDS', value: '300' }
        { name: 'EPHI_DATA_PROFILE', value: ephiTags.dataProfile }
        { name: 'EPHI_OWNER', value: ephiTags.owner }
        { name: 'EPHI_ENVIRONMENT', value: ephiTags.environment }
        { name: 'EPHI_DEPARTMENT', value: ephiTags.department }
        { name: 'IMPORT_BATCH_SIZE', value: '5000' }
        { name: 'IMPORT_PROGRESS_SECONDS', value: '10' }
        { name: 'IMPORT_RANGE_BYTES', value: '33554432' }
        { name: 'STORAGE_RETRY_TOTAL', value: '3' }
        { name: 'AUTH_MODE', value: easyAuth ? 'easyauth' : 'function' }
        { name: 'CARE_ROLES', value: careRoles }
        { name: 'MAX_REQUEST_BYTES', value: '8388608' }
        { name: 'FACILITY_IDS', value: facilityIds }
        { name: 'DEFAULT_FACILITY_ID', value: defaultFacilityId }
        { name: 'LOS_MODEL_URL', value: losModelUrl }
        { name: 'LOS_MODEL_REFRESH_SECONDS', value: '300' }
        // retrain_model: weekly, Sunday 03:00 UTC; promote a challenger not worse.
        { name: 'RETRAIN_SCHEDULE', value: '0 0 3 * * 0' }
        { name: 'RETRAIN_MIN_STAYS', value: '1000' }
        // About 1 KB a stay while training: a million stays peak at 1.05 GB, inside the
        // instance's 2,048 MB beside the other functions (bench/retrain_bench.py).
        { name: 'RETRAIN_MAX_STAYS', value: '1000000' }
        { name: 'RETRAIN_MARGIN', value: '0' }
        { name: 'LIVE_MAE_FACTOR', value: '1.5' }
        { name: 'LIVE_ACCURACY_DAYS', value: '90' }
        { name: 'CAPACITY_LONG_STAY_DAYS', value: '7' }
      ]
    }
  }
}

// No FTP and no basic-auth deployment: code is published with the deploying user’s identity.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

// App Service authentication (Microsoft Entra ID) in front of admit/discharge, when an app
// registration is given: the functions then check the caller’s app roles (CARE_ROLES).
// The CapabilityStatement and the Event Grid webhook stay reachable without a user.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (easyAuth) {
  // This is the authentication setting of the site, not a site: checkov applies its
  // web-app checks to it; the site above answers them.
  // checkov:skip=CKV_AZURE_13: this resource IS the App Service authentication setting
  parent: app
  // checkov:skip=CKV_AZURE_17: a web-app check; see the site
  // checkov:skip=CKV_AZURE_63: a web-app check; the site enables HTTP logging
  // checkov:skip=CKV_AZURE_65: a web-app check; the site enables detailed error logging
  // checkov:skip=CKV_AZURE_66: a web-app check; the site enables request tracing
  name: 'authsettingsV2'
  // checkov:skip=CKV_AZURE_80: a web-app check; no .NET here (Python)
  // checkov:skip=CKV_AZURE_88: a web-app check; Functions keep no state on Azure Files
  // checkov:skip=CKV_AZURE_222: a web-app check; see the site
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // The CapabilityStatement is public (FHIR discovery); api/health is left to its
      // function key (the deploy's postdeploy calls it with the key, no user). Events reach
      // bulk_import through its queue, not a webhook, so no other path is left open.
      excludedPaths: ['/api/metadata', '/api/health']
    }
    httpSettings: { requireHttps: true }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: { allowedAudiences: ['api://${authClientId}'] }
      }
    }
  }
}

output name string = app.name
output id string = app.id
// The identity's object id (role assignments, the database user's OBJECT_ID), its client
// id (the database user's SID) and its name (the database user's name).
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
output identityName string = identity.name
