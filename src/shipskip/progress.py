"""A tiny in-process signal so a terminal can show personas finishing while a flow runs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from .models import Take

Listener = Callable[[str, Take], None]
_listeners: list[Listener] = []


def emit(slug: str, take: Take) -> None:
    for listener in list(_listeners):
        listener(slug, take)


@contextmanager
def listening(listener: Listener):
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
