"""CT measurements on a volume and its segmentations: organ statistics, body composition, overlays."""
