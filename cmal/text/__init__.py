"""Text side of CMAL: the WordPiece tokenizer and anchor detection (both torch-free)."""
