"""The labelled reference set (one card and its per-persona labels a line) and the model's
answers on it as an evaluation keeps them: read, written, resumed after a kill."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cards import parse_card
from .checklist import card_facts
from .errors import InputError, ShipskipError, describe_validation_error
from .models import Criterion, ToolCard
from .personas import PromptSet

if TYPE_CHECKING:  # only its type: reading the answers needs no database module
    from .store import Store


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["ship", "skip", "abstain"]
    score: Annotated[int, Field(ge=0, le=100)] | None = None


class RefItem(BaseModel):
    card: ToolCard
    reference: dict[Literal["builder", "skeptic", "futurist", "creator", "founder"], Label]


def load_reference(path: Path) -> list[RefItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, "file", f"unreadable ({type(exc).__name__})") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(where, "(line)", f"invalid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InputError(where, "(root)", "each line must be an object with card and reference")
        card = parse_card(data.get("card"), where)
        try:
            items.append(RefItem(card=card, reference=data.get("reference", {})))
        except ValidationError as exc:
            field, msg = describe_validation_error(exc)
            raise InputError(where, field, msg) from None
    if not items:
        raise ShipskipError(f"{path}: no reference items")
    return items


class ItemResult(BaseModel):
    slug: str
    persona: str
    ref_verdict: str | None
    ref_score: int | None
    verdict: str | None
    score: int | None
    first_attempt_valid: bool
    grounded: bool | None
    verdict_flips: float
    score_spread: int | None
    take: str | None
    relevance: float | None = None
    criteria: list[Criterion] = []


# (what was done, tool slug, persona): called after each persona, for progress.
OnPersona = Callable[[str, str, str], None]


def quiet(step: str, slug: str, persona: str) -> None:
    pass


def _stored_answers(store: Store | None, answers_from: str) -> list[ItemResult]:
    """Answers of a stored eval, by id (or prefix), or from a JSON Lines file of them (the
    embedded model's answers on the reference set ship in data/reference/)."""
    path = Path(answers_from)
    if path.suffix == ".jsonl" and path.is_file():
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(ItemResult.model_validate({
                        "verdict": None, "score": None, "grounded": None, "verdict_flips": 0.0,
                        "score_spread": None, "take": None, **json.loads(line),
                    }))  # fmt: skip
                except (json.JSONDecodeError, ValidationError) as exc:
                    raise InputError(path, f"line {n}", str(exc).splitlines()[0]) from None
        return rows
    if store is None:
        raise ShipskipError(f"{answers_from}: no such answers file")
    return [ItemResult.model_validate(r) for r in store.eval_items(answers_from)]


def stored_answers(
    store: Store | None, answers_from: str, items: list[RefItem], prompts: PromptSet
) -> list[ItemResult]:
    """The stored answers (eval id, or a .jsonl file) for these tools and personas, with the
    facts read from each card by the persona files as they are now: those are rules, so they
    are read afresh rather than taken from the stored answers."""
    wanted = {(i.card.slug, p) for i in items for p in prompts.personas}
    cards = {i.card.slug: i.card for i in items}
    return [
        r.model_copy(update={
            "criteria": card_facts(prompts.personas[r.persona].checklist, cards[r.slug], r.criteria)
        })
        for r in _stored_answers(store, answers_from)
        if (r.slug, r.persona) in wanted
    ]  # fmt: skip


# Each persona's answers as `--answers` reads them back: the model's, not what was made of them.
ANSWER_FIELDS = {
    "slug",
    "persona",
    "ref_verdict",
    "ref_score",
    "first_attempt_valid",
    "relevance",
    "criteria",
}


def _answer_line(r: ItemResult) -> str:
    return json.dumps(
        r.model_dump(mode="json", include=ANSWER_FIELDS, exclude={"criteria": {"__all__": {"settled_by"}}})
    )


def write_answers(path: Path, results: list[ItemResult]) -> None:
    """The model's answers as JSON Lines, one persona of one tool a line, in the form of
    data/reference/answers-*.jsonl; written whole, so a file is never left half-written."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(f"{_answer_line(r)}\n" for r in results), encoding="utf-8")
    tmp.replace(path)


@contextmanager
def appending_answers(path: Path) -> Iterator[Callable[[ItemResult], None]]:
    """A function that appends one persona's answers to `path` and flushes, for a long collection
    to survive a kill; the file is rewritten whole, in order, once the collection is done."""
    with path.open("a", encoding="utf-8") as f:

        def keep(r: ItemResult) -> None:
            f.write(f"{_answer_line(r)}\n")
            f.flush()

        yield keep


def answered_personas(
    path: Path, items: list[RefItem], prompts: PromptSet
) -> dict[tuple[str, str], ItemResult]:
    """The personas already answered in a --save-answers file from an interrupted run, to be kept
    rather than asked again: only those of these tools whose stored items are still exactly
    their persona's checklist items (a changed checklist is asked afresh). A last line cut short
    by a kill is left out; any other bad line stops with the file and line named."""
    if not path.is_file():
        return {}
    cards = {i.card.slug: i.card for i in items}
    lines = path.read_text(encoding="utf-8").splitlines()
    done = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = ItemResult.model_validate({
                "verdict": None, "score": None, "grounded": None, "verdict_flips": 0.0,
                "score_spread": None, "take": None, **json.loads(line),
            })  # fmt: skip
        except (json.JSONDecodeError, ValidationError) as exc:
            if n == len(lines) and not path.read_text(encoding="utf-8").endswith("\n"):
                continue  # the persona a kill interrupted: asked again
            raise InputError(path, f"line {n}", str(exc).splitlines()[0]) from None
        checklist = prompts.personas[r.persona].checklist if r.persona in prompts.personas else None
        if r.slug not in cards or checklist is None:
            continue
        if [c.id for c in r.criteria] != [i.id for i in checklist.items]:
            continue
        done[(r.slug, r.persona)] = r.model_copy(
            update={"criteria": card_facts(checklist, cards[r.slug], r.criteria)}
        )
    return done
