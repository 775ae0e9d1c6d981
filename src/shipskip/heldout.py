"""Whether a labelled file is held out from the model's calibration: the tools each persona's
fit saw, as its recorded command and digest name them, against the tools being judged."""

from __future__ import annotations

import shlex
from pathlib import Path

from .errors import NotHeldOut
from .personas import PromptSet, tools_digest
from .reference import load_reference


def _fitted_on(prompts: PromptSet) -> set[str]:
    """The labelled files the calibrations were fitted on, as each one's command names it."""
    fitted_on = set()
    for p in prompts.personas.values():
        words = shlex.split(p.checklist.calibration.command or "")
        args = words[words.index("eval") + 1 :] if "eval" in words else []
        fitted_on.add(next((a for a in args if not a.startswith("-")), "an unrecorded set"))
    return fitted_on


def fit_note(prompts: PromptSet, reference: Path, slugs: list[str]) -> str:
    """Whether the persona files' weights were fitted on exactly these tools (their figures are
    then in-sample) or on others: the digest each file records of the tools its fit saw decides,
    so a reference file that has grown since the fit is not taken for the one it fitted."""
    cals = [p.checklist.calibration for p in prompts.personas.values()]
    fitted_on = _fitted_on(prompts)
    if all(c.tools_digest for c in cals):
        these = tools_digest(slugs)
        if all(c.tools_digest == these for c in cals):
            return "in-sample"
    elif any(Path(f).resolve() == reference.resolve() for f in fitted_on):
        return "in-sample"  # fitted before digests were recorded: the path is all there is
    counts = sorted({c.tools for c in cals if c.tools})
    size = f" ({'/'.join(map(str, counts))} tools)" if counts else ""
    return f"fitted on {', '.join(sorted(fitted_on))}{size}: held out where no tool is shared"


def held_out_note(prompts: PromptSet, reference: Path, slugs: list[str]) -> str:
    """The fit note of a held-out judgement, after checking that no tool in `slugs` was among
    the tools the model's calibration was fitted on (by slug, in each labelled file its fit
    names); raises NotHeldOut where one was. A file that is not here cannot be checked, and the
    note says so rather than vouching for it."""
    if fit_note(prompts, reference, slugs) == "in-sample":
        raise NotHeldOut(str(reference), str(reference), sorted(slugs))
    checked, unchecked = [], []
    for name in sorted(_fitted_on(prompts)):
        path = Path(name)
        if not path.is_file():
            unchecked.append(name)
            continue
        fitted = {i.card.slug for i in load_reference(path)}
        shared = sorted(fitted & set(slugs))
        if shared:
            raise NotHeldOut(str(reference), name, shared)
        checked.append(f"{name} ({len(fitted)} tools)")
    note = (
        f"held out: fitted on {', '.join(checked)}, none of these {len(slugs)} tools"
        if checked
        else "held out"
    )
    return note + (
        f"; fitted on {', '.join(unchecked)}, not found here: overlap unchecked" if unchecked else ""
    )
