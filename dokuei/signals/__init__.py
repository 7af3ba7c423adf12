"""Signal analysis shared by tools: ECG beat detection, delineation and global measurements."""
