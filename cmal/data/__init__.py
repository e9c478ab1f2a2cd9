"""The Shapes world (procedural scenes with exact labels) and the canonical JSONL formats."""
