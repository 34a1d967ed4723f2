"""Local tooling: Azurite, demo data, event delivery. Not deployed with the function app."""
