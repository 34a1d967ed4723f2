// Optional network isolation: a VNet with a subnet the Function app integrates into and a
// subnet for the private endpoints of storage, Key Vault and SQL (each in its own module).
// Private DNS zones for those endpoints are linked here.
param location string
param tags object
param resourceToken string

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: 'vnet-${resourceToken}'
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: ['10.42.0.0/16'] }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: '10.42.1.0/24'
          delegations: [
            { name: 'flex', properties: { serviceName: 'Microsoft.App/environments' } }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: { addressPrefix: '10.42.2.0/24', privateEndpointNetworkPolicies: 'Disabled' }
      }
    ]
  }
}

var zones = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.vaultcore.azure.net'
  'privatelink${environment().suffixes.sqlServerHostname}'
  'privatelink.queue.${environment().suffixes.storage}'
]

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for name in zones: {
    name: name
    location: 'global'
    tags: tags
  }
]

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (name, i) in zones: {
    parent: zone[i]
    name: 'vnet'
    location: 'global'
    tags: tags
    properties: { virtualNetwork: { id: vnet.id }, registrationEnabled: false }
  }
]

output appSubnetId string = vnet.properties.subnets[0].id
output blobZoneId string = zone[0].id
output vaultZoneId string = zone[1].id
output sqlZoneId string = zone[2].id
output queueZoneId string = zone[3].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
