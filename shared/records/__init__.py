"""The records core: the ``PatientData`` schema, the rule book every way in reads, the row."""
