"""Calibrations per model, kept apart from the prompts.

A checklist's weights are data about the model that answers it, not part of any prompt: one
model says yes to everything at 0.45-0.55, another answers 0.02 or 0.98, and weights fitted on
the first push the second's scores to 0 or 100. So a calibration is stored per model and per
persona prompt version, in JSON files: the ones shipped with the package
(`shipskip/calibrations/`) and the ones `shipskip calibrate` writes (SHIPSKIP_CALIBRATIONS_DIR,
looked up first). A model is known by the id its provider reports, plus the file's digest where
the embedded server serves a GGUF, since two files may share a name.

A model with no fitted calibration is scored label-free: contextual calibration (Zhao et al.,
"Calibrate Before Use", ICML 2021). Each question is asked on content-free cards ("N/A", empty);
the P(yes) the model gives there is its bias on that question, and every answer is divided by it
(renormalised against no). The corrected answers are scored with generic weights: each item's
direction from its persona file and a modest size from its rank in the shipped calibration,
never that calibration's magnitudes. Such takes say "uncalibrated for MODEL" everywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .calibrate import ship_chance
from .checklist import card_facts
from .errors import InputError, describe_validation_error
from .models import SHIP_THRESHOLD, Criterion, ToolCard
from .personas import Calibration, Checklist, Item, PromptSet

# Cards with no content, as the paper's "N/A" and empty inputs: what a model says about them
# is what it says about any card.
CONTENT_FREE = ("N/A", "")
# A bias is kept away from 0 and 1, where dividing by it would turn any answer into a certainty.
BIAS_FLOOR = 0.02


@dataclass(frozen=True)
class ModelKey:
    """Which model answered: the provider's model id, and for a GGUF the file's digest."""

    model: str
    digest: str | None = None

    def __str__(self) -> str:
        return f"{self.model} (GGUF {self.digest[:12]})" if self.digest else self.model

    @property
    def file_name(self) -> str:
        """A file name of our own making: the model id is the provider's text, so it never
        picks a path; only a tidied prefix of it is kept, beside a digest of the whole key."""
        stem = re.sub(r"[^a-z0-9._-]+", "-", self.model.lower()).strip(".-")[:48] or "model"
        tag = hashlib.sha256(f"{self.model}\0{self.digest or ''}".encode()).hexdigest()[:10]
        return f"{stem}-{tag}.json"


# GGUF files run to gigabytes; the digest reads the header (the model's metadata and tensor
# table) and the last bytes, with the size, which tells models apart without reading it all.
_DIGEST_SPAN = 4 << 20


@cache
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256(str(size).encode() + b"\0")
    with open(path, "rb") as f:
        h.update(f.read(_DIGEST_SPAN))
        if size > 2 * _DIGEST_SPAN:
            f.seek(size - _DIGEST_SPAN)
        h.update(f.read(_DIGEST_SPAN))
    return h.hexdigest()[:16]


def gguf_digest(path: Path) -> str:
    st = os.stat(path)
    return _digest_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


class Entry(BaseModel):
    """One persona's fitted calibration for one model, with the out-of-fold figures of its fit."""

    model_config = ConfigDict(extra="forbid")
    persona: Annotated[str, Field(pattern=r"^[a-z]+$")]
    prompt_version: Annotated[str, Field(pattern=r"^[0-9A-Za-z._-]{1,20}$")]
    calibration: Calibration
    figures: dict = Field(default_factory=dict)


class Bias(BaseModel):
    """A model's P(yes) on content-free cards, per question of one persona's prompt (by hash)."""

    model_config = ConfigDict(extra="forbid")
    persona: str
    prompt_hash: str
    p_yes: dict[str, float]


class CalibrationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    gguf_digest: str | None = None
    entries: list[Entry] = Field(default_factory=list)
    contextual: list[Bias] = Field(default_factory=list)

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.model, self.gguf_digest)


def load_file(path: Path) -> CalibrationFile:
    try:
        return CalibrationFile.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, "file", f"unreadable ({type(exc).__name__})") from None
    except ValidationError as exc:
        where, msg = describe_validation_error(exc)
        raise InputError(path, where, msg) from None


def shipped_dir() -> Path:
    return Path(str(resources.files("shipskip") / "calibrations"))


def _files(calibrations_dir: Path, key: ModelKey) -> list[Path]:
    """The user's file for this model first, then the package's."""
    return [d / key.file_name for d in (calibrations_dir, shipped_dir()) if (d / key.file_name).is_file()]


def read(calibrations_dir: Path, key: ModelKey) -> CalibrationFile | None:
    """The user's file for this model (None when there is none): the one writes go to."""
    path = calibrations_dir / key.file_name
    return load_file(path) if path.is_file() else None


def write(calibrations_dir: Path, data: CalibrationFile) -> Path:
    """Replace the model's file whole (written beside it, then renamed), so a reader never sees
    half of one and a failed write leaves the old one as it was."""
    calibrations_dir.mkdir(parents=True, exist_ok=True)
    path = calibrations_dir / data.key.file_name
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(data.model_dump_json(indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# Personas in threads keep their biases in one file per model: each read-change-write holds this,
# so one persona's write never drops another's. (Two processes may still race; the loser's bias
# is only measured again next time.)
_UPDATING = threading.Lock()


def update(
    calibrations_dir: Path, key: ModelKey, change: Callable[[CalibrationFile], CalibrationFile]
) -> Path:
    """Read the model's file (or start one), change it and write it back, as one step."""
    with _UPDATING:
        data = read(calibrations_dir, key) or CalibrationFile(model=key.model, gguf_digest=key.digest)
        return write(calibrations_dir, change(data))


def with_entries(data: CalibrationFile | None, key: ModelKey, entries: Iterable[Entry]) -> CalibrationFile:
    """The file with these entries, each replacing any for the same persona and prompt version."""
    data = data or CalibrationFile(model=key.model, gguf_digest=key.digest)
    new = list(entries)
    replaced = {(n.persona, n.prompt_version) for n in new}
    kept = [e for e in data.entries if (e.persona, e.prompt_version) not in replaced]
    return data.model_copy(update={"entries": kept + new})


def find_fitted(calibrations_dir: Path, key: ModelKey, persona: str, version: str) -> Entry | None:
    for path in _files(calibrations_dir, key):
        data = load_file(path)
        if data.key != key:
            continue  # a file name shared by another key: not this model's
        for e in data.entries:
            if e.persona == persona and e.prompt_version == version:
                return e
    return None


def reference_calibration(persona: str, version: str) -> Calibration | None:
    """The shipped calibration of this persona (its prompt version where there is one), whose
    ranking of items gives the generic weights their sizes."""
    found: list[Entry] = []
    for path in sorted(shipped_dir().glob("*.json")):
        found += [e for e in load_file(path).entries if e.persona == persona]
    pick = [e for e in found if e.prompt_version == version] or found
    return pick[-1].calibration if pick else None


def generic_calibration(checklist: Checklist, reference: Calibration | None, points: float) -> Calibration:
    """Weights for a model with no fitted calibration: each item's direction from its persona
    file, and its size 1, 2 or 3 by the rank of its weight in the reference calibration (an item
    that calibration left at zero, or one it does not know, gets 1), scaled so the weights sum
    to `points`. With answers corrected to 0-1, scores then run between 55 - points/2 and
    55 + points/2: never stuck at 0 or 100, and a card the model says nothing either way about
    sits a little under the ship line."""
    ref = reference.weights if reference else {}
    ranked = sorted((abs(w) for i in checklist.items if (w := ref.get(i.id))), reverse=True)
    size = {}
    for item in checklist.items:
        w = abs(ref.get(item.id, 0.0))
        if not w or not ranked:
            size[item.id] = 1.0
        else:
            rank = ranked.index(w) / max(len(ranked), 1)  # 0 for the heaviest
            size[item.id] = 3.0 if rank < 1 / 3 else 2.0 if rank < 2 / 3 else 1.0
    scale = points / sum(size.values())
    weights = {i.id: round(i.sign * size[i.id] * scale, 2) for i in checklist.items}
    base = SHIP_THRESHOLD - 5 - sum(w * 0.5 for w in weights.values())
    return Calibration(
        command="generic weights (no fitted calibration)", base=round(base, 2), weights=weights,
        yes_rate_weight=0.0, means={i.id: 0.5 for i in checklist.items}, abstain_below=0.5,
    )  # fmt: skip


def content_free_cards() -> list[ToolCard]:
    """The cards the bias is measured on. Built without validation: they are ours, and a real
    card needs a description of 20 characters."""
    return [
        ToolCard.model_construct(
            name=v,
            slug="content-free",
            tagline=v,
            category=v,
            pricing=v,
            entry_tier="free",
            description=v,
            source="",
            url="",
            launched=None,
        )  # fmt: skip
        for v in CONTENT_FREE
    ]


def corrected(p: float | None, bias: float | None) -> float | None:
    """P(yes) divided by the model's content-free P(yes), renormalised against P(no)."""
    if p is None or bias is None:
        return p
    b = min(max(bias, BIAS_FLOOR), 1 - BIAS_FLOOR)
    yes, no = p / b, (1 - p) / (1 - b)
    return round(yes / (yes + no), 4)


@dataclass(frozen=True)
class Scoring:
    """How one persona's answers become its score on one model: the checklist with the calibration
    to use, and for an uncalibrated model the bias its answers are corrected by."""

    checklist: Checklist
    model: str
    label: str  # which calibration, as the take records it
    uncalibrated: bool = False
    bias: dict[str, float] = field(default_factory=dict)
    # The out-of-fold figures of the fitted calibration (Entry.figures): its kappa decides
    # whether the persona counts, its ship curve gives the persona's P(ship).
    figures: dict = field(default_factory=dict)

    def p_ship(self, score: int | None) -> float | None:
        return ship_chance(self.figures.get("ship_curve"), score)

    def correct(self, item_id: str, p: float | None) -> float | None:
        return corrected(p, self.bias.get(item_id)) if self.uncalibrated else p

    def criteria(self, card: ToolCard, answers: list[tuple[Item, float | None, str]]) -> list[Criterion]:
        """Criteria from the raw answers (item, P(yes), source), corrected where the model is
        uncalibrated and weighed by this calibration, with the facts read from the card. Each
        answer is measured against this calibration's mean answer to its question
        (checklist.card_facts), never against the other answers about the same card."""
        asked = [
            Criterion(
                id=item.id, label=item.label, weight=round(self.checklist.weight(item), 2),
                p_yes=self.correct(item.id, p), source=source,  # type: ignore[arg-type]
            )
            for item, p, source in answers
            if source != "card"
        ]  # fmt: skip
        return card_facts(self.checklist, card, asked)


def persona_standing(figures: dict, title: str, kappa_min: float) -> tuple[bool, str | None]:
    """Whether a persona's verdict counts on its model, and if not, why: it counts unless the
    persona's out-of-fold kappa on that model is below `kappa_min`. A model with no fitted
    calibration (or a calibration written before figures were recorded) has no kappa to judge
    by: its personas count, and its pages already say the model is uncalibrated."""
    kappa, tools = figures.get("kappa"), figures.get("tools")
    if kappa is None or kappa >= kappa_min:
        return True, None
    shown = f"{kappa:.2f}".replace("-", "\u2212")
    signal = "no signal" if kappa <= 0 else "too little signal"
    return (
        False,
        f"not counted: on this model the {title}'s lens has shown {signal} (kappa {shown} on {tools} tools)",
    )


def fitted_label(key: ModelKey, persona: str, entry: Entry) -> str:
    c = entry.calibration
    when = f", fitted {c.fitted_on}" if c.fitted_on else ""
    return f"{key}: {persona}@{entry.prompt_version}{when} on {c.tools} tools"


def apply(checklist: Checklist, calibration: Calibration, where: str) -> Checklist:
    """The checklist with this calibration, checked as a persona file's would be (signs held to
    the lens, no unknown items), so a stale or hand-edited file is refused by name."""
    try:
        return Checklist.model_validate({**checklist.model_dump(), "calibration": calibration.model_dump()})
    except ValidationError as exc:
        field_, msg = describe_validation_error(exc)
        raise InputError(where, field_, msg) from None


def calibrated_prompts(
    prompts: PromptSet, calibrations_dir: Path, keys: dict[str, ModelKey], points: float
) -> tuple[PromptSet, dict[str, str]]:
    """The prompts with each persona's checklist carrying its model's fitted calibration, or,
    where there is none, the generic weights (offline there is no bias to correct by); and per
    persona, which it was."""
    personas, notes = {}, {}
    for name, p in prompts.personas.items():
        key = keys.get(name) or ModelKey("unknown")
        entry = find_fitted(calibrations_dir, key, name, p.version)
        if entry is not None:
            cal, notes[name] = entry.calibration, fitted_label(key, name, entry)
        else:
            cal = generic_calibration(p.checklist, reference_calibration(name, p.version), points)
            notes[name] = f"uncalibrated for {key}"
        personas[name] = p.model_copy(update={"checklist": apply(p.checklist, cal, str(calibrations_dir))})
    return prompts.model_copy(update={"personas": personas}), notes


def with_shipped(prompts: PromptSet) -> PromptSet:
    """The prompts with each persona's checklist carrying the calibration that ships with the
    package (SmolLM2-135M's): what the embedded model's stored answers in data/reference/ are
    scored and explained with, offline and without knowing which GGUF file is installed."""
    personas = {}
    for name, p in prompts.personas.items():
        cal = reference_calibration(name, p.version)
        checklist = apply(p.checklist, cal, str(shipped_dir())) if cal is not None else p.checklist
        personas[name] = p.model_copy(update={"checklist": checklist})
    return prompts.model_copy(update={"personas": personas})
