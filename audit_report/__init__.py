"""GET api/audit: the audit trail, for the auditor."""

from audit_report.function import blueprint

__all__ = ["blueprint"]
