-- The Function app's user-assigned managed identity as a contained database user with only
-- what the functions do: read and write stays and import bookkeeping, append audit rows and
-- refused rows. No DDL, no DELETE, no role membership. Run by the database administrator
-- (the server's Microsoft Entra admin) after `alembic upgrade head`, by
-- scripts/azure/postprovision.sh. Variables (infra/main.bicep's outputs):
--   $(APP_IDENTITY_NAME)  the identity's name: the user's name
--   $(APP_OBJECT_ID)      the identity's object (principal) id: the user is bound to it
--   $(APP_CLIENT_ID)      the identity's client id, which Azure SQL stores as the user's SID
-- Running it again changes nothing; run against a user bound to another identity of the
-- same name (the identity was deleted and made again: "Login failed"), it repairs the user.
IF EXISTS (
    SELECT 1 FROM sys.database_principals
    WHERE name = N'$(APP_IDENTITY_NAME)'
      AND sid <> CAST(CAST(N'$(APP_CLIENT_ID)' AS UNIQUEIDENTIFIER) AS VARBINARY(16))
)
    DROP USER [$(APP_IDENTITY_NAME)];
GO
-- Bound by object id, not looked up by display name: names need not be unique in Entra ID.
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'$(APP_IDENTITY_NAME)')
    CREATE USER [$(APP_IDENTITY_NAME)] FROM EXTERNAL PROVIDER WITH OBJECT_ID = '$(APP_OBJECT_ID)';
GO
-- Stays: bulk import and admissions insert them, discharges update them, both read them.
GRANT SELECT, INSERT, UPDATE ON dbo.PatientData TO [$(APP_IDENTITY_NAME)];
GO
-- Import runs: one row per blob version, its checkpoint and counts moved batch by batch.
GRANT SELECT, INSERT, UPDATE ON dbo.IngestRuns TO [$(APP_IDENTITY_NAME)];
GO
-- Ranges of a fanned-out file: planned once, each range's checkpoint moved batch by batch.
GRANT SELECT, INSERT, UPDATE ON dbo.IngestRanges TO [$(APP_IDENTITY_NAME)];
GO
-- Refused rows: written once with their reasons; the functions never read them back (their
-- inserts carry no OUTPUT clause, which would need SELECT: shared/records/schema.py).
GRANT INSERT ON dbo.IngestRejects TO [$(APP_IDENTITY_NAME)];
GO
-- An export's counts per resource type: written once when its run finishes, never read back.
GRANT INSERT ON dbo.IngestResourceCounts TO [$(APP_IDENTITY_NAME)];
GO
-- An export read in ranges: each range's counts per resource type, written once when it
-- finishes, and read by the range that settles the run to sum them into IngestResourceCounts.
GRANT SELECT, INSERT ON dbo.IngestRangeResourceCounts TO [$(APP_IDENTITY_NAME)];
GO
-- Facilities and their beds: the capacity view reads them; the database analyst loads them.
GRANT SELECT ON dbo.Facilities TO [$(APP_IDENTITY_NAME)];
GO
-- The audit trail: appended to, and read by GET api/audit for the Auditor app role (each
-- read is itself a row); never changed or deleted by the functions (no OUTPUT either). Rows
-- past six years are removed by the database analyst (python -m ops.audit retain).
GRANT SELECT, INSERT ON dbo.AuditLog TO [$(APP_IDENTITY_NAME)];
GO
