"""The CSV path: a file of stays in the blueprint's columns, read as records
(:mod:`.csv_rows`), checked a row (:mod:`.row_validation`) or a block at a time
(:mod:`.block_validation`), split into ranges at record boundaries when large
(:mod:`.ranges`), and imported whole or a range at a time (:mod:`.importing`)."""
