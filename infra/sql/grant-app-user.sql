-- The Function app's managed identity as a contained database user with only what the
-- functions do: read and write stays and import bookkeeping, append audit rows. No DDL, no
-- DELETE, no role membership. Run by the database administrator (Microsoft Entra admin) after
-- `alembic upgrade head`, through scripts/deploy.sh; $(APP_IDENTITY_NAME) is the Function app's
-- name (its system-assigned identity's display name). Running it again changes nothing.
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'$(APP_IDENTITY_NAME)')
    CREATE USER [$(APP_IDENTITY_NAME)] FROM EXTERNAL PROVIDER;
GO
-- Stays: bulk import and admissions insert them, discharges update them, both read them.
GRANT SELECT, INSERT, UPDATE ON dbo.PatientData TO [$(APP_IDENTITY_NAME)];
GO
-- Import runs: one row per blob version, its checkpoint and counts moved batch by batch.
GRANT SELECT, INSERT, UPDATE ON dbo.IngestRuns TO [$(APP_IDENTITY_NAME)];
GO
-- Refused rows: written once with their reasons; the functions never read them back.
GRANT INSERT ON dbo.IngestRejects TO [$(APP_IDENTITY_NAME)];
GO
-- The audit trail: appended to, never read or changed by the functions.
GRANT INSERT ON dbo.AuditLog TO [$(APP_IDENTITY_NAME)];
GO
