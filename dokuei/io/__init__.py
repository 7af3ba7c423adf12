"""Input readers shared by several tools: volumes (CT/NIfTI/DICOM), signals, radiographs."""
