"""dokuei's tools: one file per tool behind the contract in ``base.py``; the registry is data."""
