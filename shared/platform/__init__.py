"""The platform: settings, managed identity, Key Vault secrets, database engine, storage."""
