"""Batch mode (SHIPSKIP_BATCH): the checklist questions of new tools as one Batch API job.

A scheduled run has a day, and a provider's Batch API answers within one at half the price.
An ingest in batch mode:

1. collects every job an earlier run submitted that has finished (completed, expired, failed
   or cancelled): each line's answer is matched to its question by `custom_id` and stored;
   lines with no answer (failed, or not run before the job expired) are marked failed;
2. submits one job with every question of the new tools that has never been batched; a job is
   recorded in the store (by a key of ours, also sent as the job's metadata) before it is
   submitted, so a run killed between submitting and storing the job's id finds it again by
   that key and submits nothing twice;
3. reviews the tools whose every question is settled: answered questions are taken from the
   store (their tokens recorded as batch tokens, priced at half), failed ones are asked again
   in the normal way, and the takes are written directly. Tools with questions still in a job
   wait for a later run.

The Files and Batches endpoints are called through the openai SDK, as chat completions are.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import openai
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from .errors import InvalidOutput, SettingsError
from .models import ToolCard
from .personas import PromptSet, question_messages
from .redaction import redactor_for
from .replies import parse_yes_no  # the same reading of Yes/No as a direct answer
from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
FINISHED = frozenset({"completed", "expired", "failed", "cancelled"})


def question_id(persona: str, prompt_hash: str, card: ToolCard, question: str) -> str:
    """The custom_id of one question: the same persona, prompt, card content and question give the
    same id in every run, so an answer is found again whichever run asked for it."""
    blob = "\0".join((persona, prompt_hash, card.content_hash(), question))
    return "q-" + hashlib.sha256(blob.encode()).hexdigest()[:40]


def questions(prompts: PromptSet, card: ToolCard) -> list[tuple[str, str]]:
    """(persona, question) for every question the checklist asks about a card: each persona's
    relevance question and its items' questions (facts read from the card are not asked)."""
    out = []
    for persona, p in prompts.personas.items():
        if p.checklist.relevance is not None:
            out.append((persona, p.checklist.relevance.question))
        out += [(persona, item.question) for item in p.checklist.items if item.question]
    return out


@dataclass
class Plan:
    """What batch mode leaves an ingest: the tools it may review now, with their answers by
    custom_id, and what it did."""

    ready: list[ToolCard] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected: list[str] = field(default_factory=list)
    submitted: str | None = None
    submitted_requests: int = 0

    def line(self) -> str:
        parts = []
        if self.collected:
            parts.append(f"collected batch {', '.join(self.collected)}")
        if self.submitted:
            parts.append(f"submitted batch {self.submitted} ({self.submitted_requests} questions)")
        if self.waiting:
            parts.append(f"{len(self.waiting)} tools wait for their batch")
        return "; ".join(parts)


def _provider(settings: Settings, prompts: PromptSet) -> tuple[str, str, str]:
    """The one hosted provider every persona uses: (base_url, api key, model)."""
    providers = {(p.base_url, p.model) for p in map(settings.provider_for, prompts.personas)}
    (base_url, model), *others = providers
    if others:
        raise SettingsError("SHIPSKIP_BATCH", "needs every persona on the same provider and model")
    if base_url is None:
        raise SettingsError(
            "SHIPSKIP_BATCH",
            "needs a hosted provider (SHIPSKIP_BASE_URL); the embedded model has no Batch API",
        )
    key = settings.resolved_api_key()
    return base_url, key.get_secret_value() if key else "no-key", model or settings.hosted_model


def _result(line: dict[str, Any], redact: Any) -> dict[str, Any]:
    """One line of a job's output or error file, as a batch_requests row."""
    cid = line.get("custom_id", "")
    response = line.get("response") or {}
    body = response.get("body") or {}
    if line.get("error") or response.get("status_code") != 200:
        why = (line.get("error") or body.get("error") or {}).get(
            "message"
        ) or f"status {response.get('status_code')}"
        return {"custom_id": cid, "state": "failed", "error": redact(str(why))[:300]}
    try:
        completion = ChatCompletion.model_validate(body)
        p_yes, source = parse_yes_no(completion.choices[0])
    except (ValidationError, IndexError, InvalidOutput) as exc:
        return {"custom_id": cid, "state": "failed", "error": redact(str(exc).splitlines()[0])[:300]}
    usage = completion.usage
    return {
        "custom_id": cid, "state": "answered", "p_yes": p_yes, "source": source, "model": completion.model,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
    }  # fmt: skip


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    text = client.files.content(file_id).text
    return [json.loads(row) for row in text.splitlines() if row.strip()]


def prepare(cards: list[ToolCard], store: Store, settings: Settings, prompts: PromptSet) -> Plan:
    """Collect finished jobs, submit the new tools' unbatched questions as one job, and say which
    tools are ready to review with which answers."""
    base_url, api_key, model = _provider(settings, prompts)
    redact = redactor_for(settings).redact
    store.init()  # a first run's database: its jobs are recorded before any review
    plan = Plan()
    with openai.OpenAI(base_url=base_url, api_key=api_key, timeout=settings.timeout_s) as client:
        for job in store.open_batches():
            batch_id = job["batch_id"]
            if batch_id is None:
                # Recorded, then killed before its id was stored: submitted or not, the
                # provider's list says (by the key in its metadata).
                mine = job["batch_key"]
                listed = client.batches.list(limit=100)
                found = next((b for b in listed if (b.metadata or {}).get("shipskip_key") == mine), None)
                store.batch_submitted(
                    job["batch_key"], found.id if found else None, found.status if found else ""
                )
                if found is None:
                    continue  # never submitted: its questions are submitted below, once
                batch_id = found.id
            remote = client.batches.retrieve(batch_id)
            if remote.status not in FINISHED:
                continue
            lines = _lines(client, remote.output_file_id) + _lines(client, remote.error_file_id)
            store.collect_batch(job["batch_key"], remote.status, [_result(line, redact) for line in lines])
            plan.collected.append(f"{batch_id} ({remote.status})")

        known = store.batch_requests([c.slug for c in cards])
        needed: list[tuple[str, ToolCard, str, str]] = []
        for card in cards:
            for persona, question in questions(prompts, card):
                cid = question_id(persona, prompts.prompt_hash(persona), card, question)
                if cid not in known:
                    needed.append((cid, card, persona, question))
        if needed:
            key = uuid.uuid4().hex
            store.record_batch(
                key, base_url, model, list(dict.fromkeys((cid, c.slug) for cid, c, _, _ in needed))
            )
            rows = [
                json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": {
                    "model": model, "messages": question_messages(prompts, persona, card, question),
                    "logprobs": True, "top_logprobs": settings.top_logprobs, "temperature": 0.0,
                    "max_tokens": settings.checklist_max_tokens,
                }})
                for cid, card, persona, question in needed
            ]  # fmt: skip
            uploaded = client.files.create(
                file=("shipskip-batch.jsonl", "\n".join(rows).encode()), purpose="batch"
            )
            created = client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                metadata={"shipskip_key": key},
            )  # fmt: skip
            store.batch_submitted(key, created.id, created.status)
            plan.submitted, plan.submitted_requests = created.id, len(rows)
    known = store.batch_requests([c.slug for c in cards])
    pending = {r["slug"] for r in known.values() if r["state"] == "submitted"}
    for card in cards:
        if card.slug in pending:
            plan.waiting.append(card.slug)
        else:
            plan.ready.append(card)
    plan.answers = {
        cid: r for cid, r in known.items() if r["state"] == "answered" and r["slug"] not in pending
    }
    return plan
