"""Value types for the ``cmal`` command line's arguments: each parses one option's text or raises
``argparse.ArgumentTypeError`` with a message that says what was expected."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def kind_counts(text: str) -> dict[str, int]:
    """argparse type: ``KIND=N,KIND=N`` as ``{KIND: N}`` (N a whole number ≥ 0; kinds checked later)."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, number = item.partition("=")
        if not sep or not kind.strip() or not number.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected KIND=N (N a whole number ≥ 0), got {item!r}")
        counts[kind.strip()] = int(number)
    return counts
