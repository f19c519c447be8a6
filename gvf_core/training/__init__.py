"""Training loops (single process or torchrun/DDP)."""
