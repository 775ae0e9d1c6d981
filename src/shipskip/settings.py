"""Configuration, read from the environment (prefix SHIPSKIP_) and an optional .env file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pydantic_settings
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_nested_delimiter="__", extra="ignore"
    )

    # Data and pages live under the working directory (a deployment's, or the shell's), never
    # beside wherever the package happens to be installed.
    db_path: Path = Field(default=Path("data") / "shipskip.duckdb")
    # The one setting that picks the store. Unset: the single DuckDB file at db_path. Set to a
    # libpq connection string ("host=db.internal dbname=shipskip user=shipskip"): a DuckLake
    # whose catalog is that PostgreSQL database and whose Parquet files live under
    # lake_data_path, a folder every machine mounts at the same path. It may hold a password,
    # so it is a secret (prefer PGPASSWORD or ~/.pgpass, which libpq reads itself).
    catalog: SecretStr | None = None
    lake_data_path: Path = Field(default=Path("data") / "lake")
    # How long an ingest keeps coming back to tools another live process is reviewing, so that
    # one whose holder died is taken over in the same run (0: leave them for the next run).
    busy_wait_s: float = Field(default=120.0, ge=0)
    out_dir: Path = Field(default=Path("out"))
    # Analysts' queries (sql, trends, export) run on a snapshot of the database and are stopped
    # after this long, with one line and exit 2.
    query_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds an analyst's query (sql, trends, export) may run."
    )
    prompts_dir: Path = Field(default_factory=default_prompts_dir)
    calibrations_dir: Path = Field(
        default=Path("data") / "calibrations",
        description="Where `shipskip calibrate` writes the calibrations it fits (one JSON file per model) "
        "and keeps the answers it has collected; looked up before the ones shipped with the package.",
    )
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

    # No base_url means the embedded llama.cpp server with the packaged SmolLM2 model.
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    temperature: float = 0.4
    response_format: Literal["json_schema", "json_object"] | None = None
    max_tokens: int = 220
    timeout_s: float = 60.0
    # Attempts per take, counting the first: transient errors and invalid output share it.
    max_attempts: int = 3
    max_retry_wait_s: float = 30.0
    # A dead provider fails fast: a circuit breaker per provider (base URL and model) and run.
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
    # 'checklist': yes/no questions per persona, weighted (the default); 'holistic': one
    # reply with verdict, score and take, read as a probability-weighted score where possible.
    scoring: Literal["checklist", "holistic"] = "checklist"
    # Tokens allowed for a Yes/No answer; 1 where the provider allows it.
    checklist_max_tokens: int = Field(default=1, ge=1, le=16)
    # Takes drawn per persona; above 1 the median score is kept (self-consistency).
    samples: int = Field(default=1, ge=1, le=15)
    # New or changed tools one ingest reviews at most; the rest wait for the next run.
    max_new_per_run: int = Field(default=200, ge=1)
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
    # How many calls may be in flight to the provider at once, across tools: the one
    # concurrency setting. In a flow on a shared Prefect server it is also the size of the
    # global concurrency limit every worker counts against.
    llm_concurrency: int = Field(default=5, ge=1, le=1024)
    personas: dict[str, Provider] = Field(default_factory=dict)

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
        "(each seat stops before its next call; finished takes are checkpointed) before it "
        "kills them; a second SIGTERM kills them at once.",
    )
    catalogue_facts: bool = Field(
        default=False,
        description="Add the catalogue facts (similarity to earlier cards, category launches in "
        "90 days, how the nearest fared; shipskip.catalogue) to every seat's out-of-fold fit in "
        "`shipskip eval`. Off: on the reference none lifted a figure beyond its interval "
        "(docs/catalogue-and-labels.md), so reviews do not read them.",
    )

    # Any GGUF file to serve instead of the packaged SmolLM2-135M-Instruct.
    embedded_model_path: Path | None = None
    embedded_ctx: int = 2048
    embedded_threads: int | None = None
    embedded_startup_timeout_s: float = 120.0

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
        return Provider(
            base_url=own.base_url or self.resolved_base_url(),
            api_key=own.api_key or self.resolved_api_key(),
            model=own.model or self.model,
            temperature=own.temperature if own.temperature is not None else self.temperature,
            response_format=own.response_format or self.response_format,
        )

    def provider_deadline_s(self) -> float:
        """How long a provider may fail without an answer before its breaker opens."""
        return self.breaker_deadline_s or self.timeout_s * max(1, self.max_attempts)

    def needs_embedded(self, personas: list[str]) -> bool:
        return any(self.provider_for(p).base_url is None for p in personas)


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
