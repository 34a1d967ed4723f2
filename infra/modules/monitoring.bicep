// Logs and telemetry: a Log Analytics workspace (SQL auditing, diagnostics) and Application
// Insights that accepts only Microsoft Entra-authenticated telemetry (no instrumentation key
// alone can write to it).
param location string
param tags object
param resourceToken string
@description('Who is told when an alert fires (audit trail, imports, 5xx, dead letters): an email address; empty, no one (the alerts still fire in the portal).')
param alertEmail string
@description('Days the audit records are kept in all (HIPAA documentation: six years, 45 CFR 164.316(b)(2)(i)).')
@minValue(2190)
param auditRetentionDays int

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    // Interactive (queried at once, alerts read it) for a year, as the blueprint kept Key
    // Vault's logs; the audit tables below are kept six years in all.
    retentionInDays: 365
  }
}

// The audit records, kept auditRetentionDays in all: a year interactive (the workspace's
// retention), then long-term retention in the same table (a search job or a restore reads
// it). Each table is named with what writes it; docs/auditor.md states the cost.
var auditTables = [
  'AzureDiagnostics' // SQL auditing (SQLSecurityAuditEvents): infra/modules/sql.bicep
  'AZKVAuditLogs' // Key Vault's audit events (resource-specific): infra/modules/keyvault.bicep
  'StorageBlobLogs' // who read, wrote or deleted which blob: infra/modules/storage.bicep
  'StorageQueueLogs' // who sent, took or deleted which import message: storage.bicep
  'AppTraces' // the app's own audit lines (AuditWriteFailed, imports, model changes)
  'AppRequests' // every call to the functions, with its answer
]

resource auditTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = [
  for table in auditTables: {
    parent: workspace
    name: table
    properties: {
      plan: 'Analytics'
      retentionInDays: 365
      totalRetentionInDays: auditRetentionDays
    }
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource operators 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'ingest-ops'
    enabled: true
    emailReceivers: [{ name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

// Each alert reads a line the code logs (tests/test_infra.py holds every query to the code's
// own constant and format) or a table the platform fills; each says what to do in
// docs/operator.md. Every occurrence counts within the window unless a threshold says more.
var logAlerts = [
  {
    // shared/fhir/audit.py: AUDIT_WRITE_FAILED. The HIPAA trail has a hole until someone
    // completes it from the log.
    name: 'audit-write-failed'
    displayName: 'Audit rows not written (AuditWriteFailed)'
    severity: 1
    query: 'traces | where message startswith "AuditWriteFailed"'
    threshold: 0
  }
  {
    // shared/bulk/importer.py: GAVE_UP. A message failed five times and is in the
    // bulk-import-poison queue: its run (or range) is failed until it is replayed.
    name: 'import-poisoned'
    displayName: 'Import message poisoned (ImportGaveUp)'
    severity: 2
    query: 'traces | where message startswith "ImportGaveUp"'
    threshold: 0
  }
  {
    // shared/bulk/ingest_runs.py: RUN_FINISHED, status failed (a file refused whole, a
    // range given up on, an export whose files never came).
    name: 'import-run-failed'
    displayName: 'Import run failed (ImportRunFinished … failed)'
    severity: 2
    query: 'traces | where message startswith "ImportRunFinished" and message has " failed: "'
    threshold: 0
  }
  {
    // The same line: a run that refused more than one row in ten (of at least 100) — a
    // source that changed its format, or a rule that no longer fits the data.
    name: 'import-rejects-spike'
    displayName: 'Import run refused over 10% of its rows'
    severity: 3
    query: 'traces | where message startswith "ImportRunFinished" | parse message with * "read=" read:long " stored=" stored:long " rejected=" rejected:long * | where read >= 100 and rejected * 10 > read'
    threshold: 0
  }
  {
    // los_model/monitoring.py: MODEL_FLAGGED. The champion's error on discharged admissions
    // is well above its held-out error, or the admissions drifted from its training stays.
    name: 'model-flagged'
    displayName: 'Length-of-stay model flagged (ModelFlagged)'
    severity: 3
    query: 'traces | where message startswith "ModelFlagged"'
    threshold: 0
  }
  {
    // los_model/retraining.py: CHALLENGER_REFUSED. A retraining kept the champion (the new
    // model was worse) or could not train at all.
    name: 'challenger-refused'
    displayName: 'Challenger model refused (ChallengerRefused)'
    severity: 4
    query: 'traces | where message startswith "ChallengerRefused"'
    threshold: 0
  }
  {
    // retrain_model/function.py: RETRAIN_FAILED. A scheduled retraining could not run (the
    // database stayed unavailable through its retries, or it failed): no report and no
    // challenger until next week unless someone retrains by hand.
    name: 'retrain-failed'
    displayName: 'Scheduled retraining failed (RetrainFailed)'
    severity: 3
    query: 'traces | where message startswith "RetrainFailed"'
    threshold: 0
  }
  {
    // Application Insights' own requests table: answers of 500 or more (the functions
    // answer 503 when the database or the vault cannot be reached).
    name: 'http-5xx'
    displayName: 'admit/discharge answered 5xx'
    severity: 2
    query: 'requests | where toint(resultCode) >= 500'
    threshold: 5
  }
]

resource logAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for alert in logAlerts: {
    name: 'alert-${alert.name}-${resourceToken}'
    location: location
    tags: tags
    properties: {
      displayName: alert.displayName
      description: 'See docs/operator.md, Alerts.'
      severity: alert.severity
      enabled: true
      scopes: [applicationInsights.id]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT5M'
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: alert.threshold
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: empty(alertEmail) ? [] : [operators.id] }
    }
  }
]

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output applicationInsightsName string = applicationInsights.name
output actionGroupId string = empty(alertEmail) ? '' : operators.id
