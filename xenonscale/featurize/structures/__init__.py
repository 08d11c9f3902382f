"""Crystal-structure featurizers (placeholder: filled in by the structures work)."""
