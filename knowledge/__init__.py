"""The report archive and the versioned reference data (norms, criteria, thresholds)."""
