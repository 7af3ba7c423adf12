"""Synthetic phantoms with known geometry, for exact tests and the demo."""
