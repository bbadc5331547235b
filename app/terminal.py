"""Text from outside (an import file's field names and values, a database's error) written to
an operator's terminal: control characters escaped, so that a file cannot move the cursor,
clear the screen or recolour what follows (an ESC read from a line would be run by the
terminal)."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with each character that is not printable written as Python writes it in a
    string literal (``\\x1b``, ``\\n``, ``\\u200e``); the others as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
