"""Untrusted text on its way to a terminal. Pure functions."""

from __future__ import annotations

from rich.markup import escape

from .models import clean_text


def for_terminal(value: object) -> str:
    """Any untrusted text (a card field, a take, a reason, a voter, an error message) as one line
    rich may print: escape sequences (CSI, OSC 8 links, window titles), C0 and C1 control
    characters, zero-width and bidi controls removed, whitespace folded, and rich markup escaped
    so `[/x]` or `[link=...]` prints as written instead of failing or making a link."""
    return escape(clean_text(str(value)))
