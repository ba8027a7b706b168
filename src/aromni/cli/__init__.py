"""The ``aromni`` command line (thin: each command parses flags and calls library functions)."""
