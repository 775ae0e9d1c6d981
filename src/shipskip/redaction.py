"""Secrets out of provider text: every reply and every error of a provider call passes here.

A hostile or broken provider can echo the API key back, whole in a reply or in pieces in an
error body ("bad key sk-red-secret-12345..."). Anything that leaves a provider call can end
up in DuckDB, a page, a log, Prefect's results or the terminal, so the masking happens once,
where the text comes in (`llm.LLMClient`), rather than at each of those places.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from .settings import Settings

MASK = "***"

# libpq's key=value form (password=x or password='x y') and the URI form (scheme://user:x@host).
_CONNINFO_PASSWORD = re.compile(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]+)@", re.IGNORECASE)


class Redactor:
    """Masks every secret it was given: the whole value, and any run of `min_run` or more
    consecutive characters of it, wherever they occur in a text.

    A run is found by its `min_run`-character windows: every window of such a run is a window
    of the secret, so marking each window that is one covers the run, however long. Two windows
    that overlap by chance may mask a little more than the secret; never less.
    """

    def __init__(self, secrets: Iterable[str], min_run: int = 8) -> None:
        self.min_run = max(1, min_run)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._windows = {
            s[i : i + self.min_run] for s in self._secrets for i in range(len(s) - self.min_run + 1)
        }

    def _spans(self, text: str) -> list[tuple[int, int]]:
        marked: list[tuple[int, int]] = []
        n = self.min_run
        if self._windows:
            marked += [(i, i + n) for i in range(len(text) - n + 1) if text[i : i + n] in self._windows]
        # A secret shorter than a window can only be matched whole.
        for s in self._secrets:
            if len(s) < n:
                marked += [(m.start(), m.end()) for m in re.finditer(re.escape(s), text)]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(marked):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def redact(self, text: str) -> str:
        """The text with each secret, and each run of `min_run` characters of one, as `***`."""
        if not text or not self._secrets:
            return text
        out, at = [], 0
        for start, end in self._spans(text):
            out += [text[at:start], MASK]
            at = end
        out.append(text[at:])
        return "".join(out)

    def holds(self, text: str | None) -> bool:
        """Whether the text holds a secret or a run of one."""
        return bool(text) and bool(self._secrets) and bool(self._spans(text or ""))


def catalog_password(catalog: str) -> str | None:
    """The password a libpq connection string carries, if it carries one."""
    found = _CONNINFO_PASSWORD.search(catalog) or _URI_PASSWORD.search(catalog.strip())
    if not found:
        return None
    return next((g for g in found.groups() if g), None)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: the API keys (panel-wide and per persona), the
    catalog's password, and PGPASSWORD, which libpq reads for the catalog."""
    found = []
    key = settings.resolved_api_key()
    if key is not None:
        found.append(key.get_secret_value())
    found += [p.api_key.get_secret_value() for p in settings.personas.values() if p.api_key is not None]
    if settings.catalog is not None:
        found.append(catalog_password(settings.catalog.get_secret_value()) or "")
    found.append(os.environ.get("PGPASSWORD", ""))
    return [s for s in found if s]


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(settings_secrets(settings), settings.secret_min_run)
