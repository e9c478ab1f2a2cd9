"""CMAL: cross-modal associative learning — model library, Shapes world, training and evaluation."""

__version__ = "0.1.0"
