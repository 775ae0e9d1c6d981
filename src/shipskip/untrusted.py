"""Untrusted text made safe to read, store and print: YAML read with the safe loader, web
addresses checked, and card or model text with terminal escapes, control, zero-width and bidi
characters out. Pure functions."""

from __future__ import annotations

import re
import unicodedata

import yaml

# libyaml's safe loader where it is built in: the same documents, read several times faster
# (persona files are read on every review).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> object:
    """Parse YAML with the safe loader: plain data only, no tags that construct objects."""
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


_WEB_ADDRESS = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)


def is_web_address(url: str) -> bool:
    """http(s) with a host and no whitespace: the only addresses shipskip stores, links or follows."""
    return bool(_WEB_ADDRESS.fullmatch(url))


# Escape sequences a terminal would act on: CSI (colours, clear screen), OSC (window title,
# links) and the other two-byte escapes.
_ESCAPE_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")


# Characters that show nothing yet are not format characters (Cf): the combining grapheme
# joiner, Hangul and Khmer fillers, Mongolian variation selectors, the blank Braille cell.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u3164\uffa0\u2800")


def _invisible(ch: str) -> bool:
    """Format characters (zero-width, bidi controls, BOM, word joiner, tags), lone surrogates
    (which JSON escapes can make and no store can encode) and the fillers above."""
    return unicodedata.category(ch) in ("Cf", "Cs") or ch in _INVISIBLE or "\ufe00" <= ch <= "\ufe0f"


def clean_text(value: str) -> str:
    """Model output made safe to store and print: escapes, control, zero-width and bidi characters out."""
    value = _ESCAPE_RE.sub("", value)
    value = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value
                    if not _invisible(ch))  # fmt: skip
    return " ".join(value.split())


def normalise_untrusted(value: str) -> str:
    """NFKC (full-width and look-alike forms folded), terminal escapes and invisible characters
    (zero-width, bidi controls, fillers) removed, so what every check reads is what the model reads."""
    if value.isascii():
        # NFKC leaves ASCII as it is and every invisible character is beyond it: only escapes
        # can go. The checks on each take read the card and the take this way several times.
        return _ESCAPE_RE.sub("", value)
    value = _ESCAPE_RE.sub("", unicodedata.normalize("NFKC", value))
    return "".join(ch for ch in value if not _invisible(ch))


def card_text(value: str, *, multiline: bool = False) -> str:
    """Card text as every check, the store and the panel read it: normalised as above, control
    characters (C0 and C1) as spaces, whitespace folded; a description keeps its line breaks,
    with runs of blank lines folded to one. Idempotent, so a stored card validates again."""
    # Printable ASCII (and line breaks) is left as it is by NFKC and holds no escape, control or
    # invisible character: only the folding applies. A site build validates every stored card.
    plain = value.isascii() and value.replace("\n", "").isprintable()
    if not plain:
        value = normalise_untrusted(value)
    if not multiline:
        if not plain:
            value = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value)
        return " ".join(value.split())
    if not plain:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        value = "".join(" " if ch != "\n" and unicodedata.category(ch) == "Cc" else ch for ch in value)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(" ".join(line.split()) for line in value.split("\n"))).strip()


# A reason someone gives (an editor's label, a rerun) must say something once normalised.
MIN_REASON = 3
REASON_TOO_SHORT = f"must say why ({MIN_REASON} characters or more, control characters aside)"
