"""Lymph-node measurement and RECIST 1.1 response: axes, click segmentation, matching, response."""
