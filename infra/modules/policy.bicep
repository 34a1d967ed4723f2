// Azure Policy's built-in HITRUST/HIPAA regulatory-compliance initiative, assigned to this
// deployment's resource group: Defender for Cloud's regulatory-compliance view then measures
// exactly these resources against HIPAA HITRUST 9.2 (docs/auditor.md says what it shows and
// which findings are expected, and why).
//
// The initiative (version 14.13.0 when this was written: 589 policies, no parameter without a
// default) is audit-only for the resources deployed here. Its two Deny policies govern Data
// Lake Store accounts and gateway subnets, neither of which exists here; its
// DeployIfNotExists and Modify policies govern virtual machines. Azure refuses an assignment
// of an initiative holding such policies without a managed identity, so the assignment has
// one; it is granted no role, so it can report but never change a resource.
param location string
param resourceToken string

// The built-in initiative's name: the same in every tenant (Azure/azure-policy,
// built-in-policies/policySetDefinitions/Regulatory Compliance/HIPAA_HITRUST_audit.json).
var hipaaHitrustInitiative = 'a169a624-5599-4385-a696-c8d643089fab'

resource hipaaHitrust 'Microsoft.Authorization/policyAssignments@2025-01-01' = {
  name: 'hipaa-hitrust-${resourceToken}'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    displayName: 'HITRUST/HIPAA (patient ingest tier)'
    description: 'Regulatory compliance of this deployment against HIPAA HITRUST 9.2; see docs/auditor.md.'
    policyDefinitionId: tenantResourceId('Microsoft.Authorization/policySetDefinitions', hipaaHitrustInitiative)
    enforcementMode: 'Default'
  }
}

output assignmentId string = hipaaHitrust.id
