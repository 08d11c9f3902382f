"""Molecule featurizers (placeholder: filled in by the molecules work)."""
