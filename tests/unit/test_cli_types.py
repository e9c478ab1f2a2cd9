"""The command line's value types: each accepts what it documents and rejects the rest with a message."""

from __future__ import annotations

import argparse

import pytest

from cmal.cli_types import fraction, kind_counts, positive


def test_each_type_parses_what_it_documents() -> None:
    assert positive("3") == 3
    assert fraction("0") == 0.0 and fraction("1") == 1.0 and fraction("0.25") == 0.25
    assert kind_counts("count=3, shape=0") == {"count": 3, "shape": 0}


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (positive, "0", "at least 1"),
        (positive, "two", "not a whole number"),
        (fraction, "1.5", "between 0 and 1"),
        (fraction, "half", "not a number"),
        (kind_counts, "count", "KIND=N"),
    ],
)
def test_each_type_rejects_with_a_message(parse, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)
