"""Configuration, read from the environment (prefix SHIPSKIP_) and an optional .env file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pydantic_settings
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The packaged model the embedded server runs when no provider is set. Here rather than in
# `embedded`, so pages can name the demo model without importing the server.
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"


def default_prompts_dir() -> Path:
    """The checkout's prompts/ when running from one; the copy inside an installed wheel otherwise."""
    checkout = PROJECT_ROOT / "prompts"
    return checkout if (checkout / "personas").is_dir() else Path(__file__).resolve().parent / "prompts"


def quiet_prefect() -> None:
    """Set Prefect's environment before it is imported: no analytics, no colour noise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


class Provider(BaseModel):
    """Where one persona's requests go. Unset fields fall back to the panel-wide values."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    temperature: float | None = None
    # llama.cpp's server wants json_object with a schema; hosted providers want json_schema.
    response_format: Literal["json_schema", "json_object"] | None = None


ENV_PREFIX = "SHIPSKIP_"


class StoreSettings(BaseModel):
    """Where reviews are stored, and how processes share the store."""

    # Data and pages live under the working directory (a deployment's, or the shell's), never
    # beside wherever the package happens to be installed.
    db_path: Path = Field(
        default=Path("data") / "shipskip.duckdb",
        description="The DuckDB file every take, run and vote is stored in (when CATALOG is unset).",
    )
    # It may hold a password, so it is a secret (prefer PGPASSWORD or ~/.pgpass, which libpq
    # reads itself).
    catalog: SecretStr | None = Field(
        default=None,
        description="The one setting that picks the store: unset, the DuckDB file at DB_PATH; a libpq "
        "connection string (`host=db.internal dbname=shipskip user=shipskip`), a DuckLake whose catalog "
        "is that PostgreSQL database, for many machines.",
    )
    lake_data_path: Path = Field(
        default=Path("data") / "lake",
        description="Where a DuckLake keeps its Parquet files: a folder every machine mounts at one path.",
    )
    busy_wait_s: float = Field(
        default=120.0, ge=0,
        description="How long an ingest keeps coming back to tools another live process is reviewing, so "
        "one whose holder died is taken over in the same run (0: leave them for the next run).",
    )  # fmt: skip
    lease_s: float = Field(
        default=900.0, gt=0,
        description="A review whose holder (on another machine, or with no process left) shows no sign of "
        "life for this long is taken to be abandoned and taken over.",
    )  # fmt: skip
    store_hold_s: float = Field(
        default=1.0, gt=0, le=30,
        description="How long one process may keep the DuckDB file open for its queued writers before it "
        "lets other processes in. At 0.25 s a busy ingest kept the provider 81% busy, at 0.5 s 88%, at "
        "1 s 93% (bench/ingest_bench.py); another process waits about this long for its turn.",
    )  # fmt: skip
    query_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Seconds an analyst's query (sql, trends, export) may run on its snapshot of the "
        "database before it is stopped, with one line and exit status 2.",
    )  # fmt: skip


class ProviderSettings(BaseModel):
    """The provider every persona asks (unless it has its own), and how its calls are bounded."""

    base_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible provider's base URL (or OPENAI_BASE_URL); unset, the embedded "
        "llama.cpp server with the packaged SmolLM2-135M-Instruct.",
    )
    api_key: SecretStr | None = Field(default=None, description="The provider's API key (or OPENAI_API_KEY).")
    model: str | None = Field(
        default=None,
        description="The model to ask; unset, HOSTED_MODEL for a provider, the GGUF's name when embedded.",
    )
    hosted_model: str = Field(
        default="gpt-4o-mini", description="The model asked of a provider (BASE_URL set) when MODEL is unset."
    )
    temperature: float = Field(default=0.4, description="Sampling temperature of the take's text.")
    response_format: Literal["json_schema", "json_object"] | None = Field(
        default=None,
        description="How structured replies are asked for: `json_schema` (hosted providers) or `json_object` "
        "with a schema (llama.cpp-style servers); unset, chosen by provider.",
    )
    max_tokens: int = Field(default=220, ge=16, description="Tokens a reply (a take) may use.")
    timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds one call to the provider may take, whole reply included."
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts per take, counting the first: transient errors and invalid output share them.",
    )
    max_retry_wait_s: float = Field(
        default=30.0, ge=0, description="The longest wait between attempts, Retry-After included."
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="Calls in a row that may fail (timeouts, connection errors, 5xx) before a "
        "provider (base URL and model) is not asked again in this run; the run stops in one line.",
    )
    breaker_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="How long failed calls in a row (two or more) may have waited on a provider "
        "before it is given up on in this run; unset means TIMEOUT_S x MAX_ATTEMPTS.",
    )
    secret_min_run: int = Field(
        default=8,
        ge=4,
        description="Any run of this many characters of a secret (an API key, the catalog's "
        "password) in a provider's reply or error is masked; a reply holding one is refused.",
    )
    llm_concurrency: int = Field(
        default=5, ge=1, le=1024,
        description="Calls in flight to the provider at once, across tools: the one concurrency setting. "
        "In a flow on a shared Prefect server it is also the size of the global concurrency limit every "
        "worker counts against.",
    )  # fmt: skip
    personas: dict[str, Provider] = Field(
        default_factory=dict,
        description="A persona's own provider: `PERSONAS__SKEPTIC__BASE_URL`, `__MODEL`, `__API_KEY`, "
        "`__TEMPERATURE`, `__RESPONSE_FORMAT`; unset fields fall back to the panel-wide ones.",
    )

    def resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def resolved_api_key(self) -> SecretStr | None:
        if self.api_key is not None:
            return self.api_key
        env = os.environ.get("OPENAI_API_KEY")
        return SecretStr(env) if env else None

    def provider_for(self, persona: str) -> Provider:
        """Merge the persona's own provider settings over the panel-wide ones."""
        own = self.personas.get(persona.lower(), Provider())
        base_url = own.base_url or self.resolved_base_url()
        return Provider(
            base_url=base_url,
            api_key=own.api_key or self.resolved_api_key(),
            model=own.model or self.model or (self.hosted_model if base_url else None),
            temperature=own.temperature if own.temperature is not None else self.temperature,
            response_format=own.response_format or self.response_format,
        )

    def provider_deadline_s(self) -> float:
        """How long a provider may fail without an answer before its breaker opens."""
        return self.breaker_deadline_s or self.timeout_s * max(1, self.max_attempts)

    def needs_embedded(self, personas: list[str]) -> bool:
        return any(self.provider_for(p).base_url is None for p in personas)


class ScoringSettings(BaseModel):
    """The panel's prompts, how a take is scored and calibrated, and when a verdict counts."""

    prompts_dir: Path = Field(
        default_factory=default_prompts_dir,
        description="Another prompts folder (personas, templates); default: the checkout's prompts/, or "
        "the copy inside the installed package.",
    )
    calibrations_dir: Path = Field(
        default=Path("data") / "calibrations",
        description="Where `shipskip calibrate` writes the calibrations it fits (one JSON file per model) "
        "and keeps the answers it has collected; looked up before the ones shipped with the package.",
    )
    scoring: Literal["checklist", "holistic"] = Field(
        default="checklist",
        description="`checklist`: yes/no questions per persona, weighted by the model's calibration; "
        "`holistic`: one reply with verdict, score and take, read as a probability-weighted score.",
    )
    checklist_max_tokens: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Tokens allowed for a Yes/No answer; 1 where the provider allows it.",
    )
    top_logprobs: int = Field(
        default=10, ge=1, le=20,
        description="Alternatives asked for at a Yes/No answer's token: enough to find both Yes and No.",
    )  # fmt: skip
    samples: int = Field(
        default=1,
        ge=1,
        le=15,
        description="Takes drawn per persona; above 1 the median score is kept (self-consistency).",
    )
    flag_delta: int = Field(
        default=15, ge=1, le=100,
        description="How far a score may move when a card's suspicious text (orders to the model) is "
        "removed before the take is marked suspicious (a flipped verdict always is).",
    )  # fmt: skip
    require_calibration: bool = Field(
        default=False,
        description="Refuse, before any review, a model with no fitted calibration for a persona's prompt "
        "version, instead of scoring it with the label-free (contextual) correction.",
    )
    uncalibrated_points: float = Field(
        default=70.0, gt=0, le=100,
        description="For a model with no fitted calibration: how many points lie between a card every "
        "checklist answer speaks for and one every answer speaks against (the generic weights sum to it).",
    )  # fmt: skip
    count_kappa_min: float = Field(
        default=0.2, ge=-1, le=1,
        description="A persona's verdict counts in the panel only where its out-of-fold Cohen's kappa "
        "on the model in use (recorded in that model's calibration) is at least this; below it the take is "
        "shown, marked not counted.",
    )  # fmt: skip
    contested_above: float = Field(
        default=0.35, ge=0, le=1,
        description="A panel verdict whose chance of flipping (from its counted personas' P(ship)) is above "
        "this reads \"contested\" on pages, badges and in `show`.",
    )  # fmt: skip
    catalogue_facts: bool = Field(
        default=False,
        description="Add the catalogue facts (similarity to earlier cards, category launches in "
        "90 days, how the nearest fared; shipskip.catalogue) to every persona's out-of-fold fit in "
        "`shipskip eval`. Off: on the reference none lifted a figure beyond its interval "
        "(docs/catalogue-and-labels.md), so reviews do not read them.",
    )


class RunSettings(BaseModel):
    """How an ingest reads its source and how a run logs and stops."""

    max_new_per_run: int = Field(
        default=200,
        ge=1,
        description="New or changed tools one ingest reviews at most; the rest wait for the next run.",
    )
    feed_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Total time to fetch a feed URL, from connecting to its last byte.",
    )
    feed_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="The largest feed (URL or file) that is read; a bigger one is refused.",
    )
    debug: bool = Field(
        default=False,
        description="Log tracebacks with errors: a flow run that fails on bad input logs its one "
        "line, and with this its traceback too (as PREFECT_LOGGING_LEVEL=DEBUG does).",
    )
    shutdown_grace_s: float = Field(
        default=7.0,
        ge=0,
        le=60,
        description="How long `shipskip serve` gives the runs in flight after SIGTERM to stop "
        "(each persona stops before its next call; finished takes are checkpointed) before it "
        "kills them; a second SIGTERM kills them at once.",
    )


class EmbeddedSettings(BaseModel):
    """The llama.cpp server started when a persona has no provider."""

    embedded_model_path: Path | None = Field(
        default=None, description="Any GGUF file to serve instead of the packaged SmolLM2-135M-Instruct."
    )
    embedded_ctx: int = Field(
        default=2048, ge=256, description="The embedded server's context window, in tokens."
    )
    embedded_threads: int | None = Field(
        default=None, ge=1, description="CPU threads of the embedded server; unset, llama.cpp's choice."
    )
    embedded_startup_timeout_s: float = Field(
        default=120.0, gt=0, description="How long the embedded server may take to start answering."
    )


class SiteSettings(BaseModel):
    """The static site and `shipskip web`."""

    out_dir: Path = Field(default=Path("out"), description="Where pages, badges and exports are written.")
    site_url: str | None = Field(
        default=None,
        description="The site's public base URL (http or https), for canonical links, the embed "
        "snippet, the Atom feed and sitemap.xml; unset, those say the build is local.",
    )
    compare_neighbours: int = Field(
        default=5,
        ge=0,
        le=50,
        description="Comparison pages `shipskip site` writes per tool: against this many tools of "
        "its category, the nearest by panel ship %.",
    )
    site_markdown: bool = Field(
        default=False,
        description="Whether `shipskip site` also writes a Markdown twin (.md) of each tool, reviewer "
        "and digest page; off, the site is HTML only (`page`, `compare` and `digest` still write "
        "theirs).",
    )
    site_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes `shipskip site` renders a big build in (2000 pages or more to write; "
        "forked, so POSIX only); 0: one per CPU; 1 renders in the calling process.",
    )
    web_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs `shipskip web`'s voter cookies and form tokens; unset, a new "
        "random one each start (readers then get a new voter id, and can vote again).",
    )
    web_posts_per_minute: int = Field(
        default=30,
        ge=1,
        description="Votes and Helpful marks `shipskip web` takes from one client address per minute; "
        "more get 429.",
    )
    web_max_body_bytes: int = Field(
        default=2048,
        ge=256,
        le=65536,
        description="The largest request body `shipskip web` reads; a bigger one gets 413.",
    )

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, v: str | None) -> str | None:
        # It ends up in every page's links: a web address only, no query or fragment.
        if v is not None and not re.fullmatch(r"https?://[^\s/?#\\\"'<>]+(/[^\s?#\\\"'<>]*)?", v):
            raise ValueError("must be an http or https address such as https://example.org/reviews")
        return v.rstrip("/") if v else None


class CostSettings(BaseModel):
    """What a run may spend, and the cheaper batch route."""

    prices_path: Path = Field(
        default=Path("data") / "prices.toml",
        description="Your model prices (TOML, US dollars per million input, cached input and output "
        "tokens, with a date), over the dated ones shipped with shipskip; `shipskip prices` lists them.",
    )
    max_cost_per_run: float | None = Field(
        default=None,
        gt=0,
        description="Dollars an ingest may spend; once reached it starts no more personas or tools, keeps "
        "what it finished and leaves the rest for the next run. Every model must have a price.",
    )
    max_tokens_per_run: int | None = Field(
        default=None,
        ge=1,
        description="Tokens (prompt and completion) an ingest may spend, with the same stop as "
        "MAX_COST_PER_RUN; works for unpriced models.",
    )
    batch: bool = Field(
        default=False,
        description="Ingest in batch mode: the checklist questions of new tools go to the provider's "
        "Batch API as one job (half price, answered within 24 h); a later run collects them and reviews "
        "those tools.",
    )


class Settings(
    CostSettings,
    SiteSettings,
    EmbeddedSettings,
    RunSettings,
    ScoringSettings,
    ProviderSettings,
    StoreSettings,
    BaseSettings,
):
    """Every setting, read from SHIPSKIP_* variables and .env. The groups are listed last to
    first because pydantic collects fields from the last base up: so `shipskip settings` and the
    README's table list them store first, cost last."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_nested_delimiter="__", extra="ignore"
    )


def get_settings() -> Settings:
    """The settings; one that cannot be used is a SettingsError naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise _named(exc) from None
    except pydantic_settings.SettingsError as exc:
        # A value that is not even parseable (JSON for a nested setting): the field is only named
        # inside the message, which is read here for display alone.
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "settings"
        raise SettingsError(name, "could not be parsed") from None


# Bounds said as a reader would write them, rather than pydantic's sentence.
_BOUNDS = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}  # fmt: skip


def _named(exc: ValidationError) -> SettingsError:
    """The first problem as `SHIPSKIP_NAME: must be ...`. The value itself is never repeated:
    it may be a key."""
    first = exc.errors(include_input=False, include_url=False)[0]
    loc = [str(part) for part in first["loc"] if not isinstance(part, int)]
    variable = ENV_PREFIX + "__".join(part.upper() for part in loc) if loc else "settings"
    kind, ctx = first["type"], first.get("ctx") or {}
    if kind in _BOUNDS and _BOUNDS[kind][1] in ctx:
        sign, key = _BOUNDS[kind]
        return SettingsError(variable, f"must be {sign} {ctx[key]}")
    msg = first["msg"].removeprefix("Value error, ")
    if msg.startswith("Input should "):
        msg = "must " + msg.removeprefix("Input should ")
    return SettingsError(variable, msg)


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return {"prompts_dir": "the checkout's `prompts/`"}.get(name, "empty")
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"`{value}`"


def settings_table() -> str:
    """Every setting as a Markdown table (the README's, which a test keeps current)."""
    rows = ["| Variable | Default | What it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        text = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default_text(name)} | {text} |")
    return "\n".join(rows) + "\n"
