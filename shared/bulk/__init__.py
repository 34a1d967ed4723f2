"""The bulk path: a CSV blob announced by Event Grid → validated rows, in batches, stored."""
