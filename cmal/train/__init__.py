"""Pre-training and multi-task fine-tuning of CMAL (single process or torchrun/DDP)."""
