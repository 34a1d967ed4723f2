"""The auditor's evidence: who did what to which stay, the refusals, and who can reach
patient data; ids and reasons, never a name or a clinical value."""
