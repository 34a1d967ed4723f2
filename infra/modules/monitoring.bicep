// Logs and telemetry: a Log Analytics workspace (SQL auditing, diagnostics) and Application
// Insights that accepts only Microsoft Entra-authenticated telemetry (no instrumentation key
// alone can write to it).
param location string
param tags object
param resourceToken string
@description('Who is told when the audit trail has a hole: an email address; empty, no one (the alert still fires in the portal).')
param alertEmail string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 365 // HIPAA asks for six years of audit records: export beyond a year
  }
}

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

// An audit row the database would not take (shared/fhir/audit.py logs AuditWriteFailed with
// the event instead): the HIPAA audit trail has a hole until someone completes it from the
// log. Every occurrence counts, within five minutes.
resource auditWriteFailed 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-audit-write-failed-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Audit rows not written (AuditWriteFailed)'
    description: 'The functions could not write AuditLog rows; the events are in the log. See docs/operator.md.'
    severity: 1
    enabled: true
    scopes: [applicationInsights.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "AuditWriteFailed"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: empty(alertEmail) ? [] : [operators.id] }
  }
}

output workspaceId string = workspace.id
output applicationInsightsName string = applicationInsights.name
