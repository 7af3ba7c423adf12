"""Network architectures written in plain torch (import only inside tools' setup/run: they import torch)."""
