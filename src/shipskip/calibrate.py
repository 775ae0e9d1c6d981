"""Fitting checklist weights on labelled data, and measuring them out-of-fold. Pure functions.

The fit is a class-balanced, L2-regularised logistic regression of ship against skip on the
checklist's P(yes) answers, with each weight held to the sign its persona file gives it
(`counts: for` or `against`): calibration decides how much an answer weighs, never which way.
The margin is then mapped onto points so that 60 is the decision boundary and the fitted
scores spread as widely as the reference scores do. Abstaining is a second, smaller logistic
model on the relevance answer and the lens signals the persona file declares (`in_lens`,
`out_of_lens`), each held to its direction, cut at the best Matthews correlation; it never
abstains when the reference holds no abstentions.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .checklist import abstains, features, score_from
from .models import SHIP_THRESHOLD, Criterion, verdict_for
from .personas import Calibration, Checklist, tools_digest

# Fixed before looking at any result: strong enough that a dozen weights on forty tools
# cannot memorise the reference.
L2 = 0.5
STEPS = 4000
LEARNING_RATE = 0.2
# Points per unit of margin are capped, so weak answers cannot be stretched into a wide spread.
MAX_POINTS_PER_MARGIN = 40.0


@dataclass(frozen=True)
class Observation:
    """One persona's answers on one labelled tool."""

    slug: str
    answers: dict[str, float | None]
    relevance: float | None
    ref_verdict: str  # ship, skip or abstain
    ref_score: int | None


@dataclass(frozen=True)
class Prediction:
    slug: str
    verdict: str  # ship, skip or abstain
    score: int | None


def feature_matrix(checklist: Checklist, obs: Sequence[Observation]) -> tuple[list[str], np.ndarray]:
    """Rows of (items..., yes_rate, relevance), as the product computes them."""
    names = [i.id for i in checklist.items] + ["yes_rate", "relevance"]
    rows = []
    for o in obs:
        crit = [Criterion(id=k, label=k, weight=0.0, p_yes=v) for k, v in o.answers.items()]
        x = features(checklist, crit, o.relevance)
        rows.append([x[n] for n in names])
    return names, np.array(rows, dtype=float).reshape(len(obs), len(names))


def _logistic(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, float]:
    """Coefficients and an intercept by projected gradient descent; coefficients not marked
    `free` are held at zero or above (the lens's direction)."""
    n, k = z.shape
    v, b = np.zeros(k), 0.0
    for _ in range(STEPS):
        m = z @ v + b
        g = -y * weights / (1.0 + np.exp(y * m))
        grad_v = z.T @ g / weights.sum() + L2 * v / max(n, 1)
        grad_b = float(g.sum() / weights.sum())
        v = v - LEARNING_RATE * grad_v
        v = np.where(free, v, np.maximum(0.0, v))
        b -= LEARNING_RATE * grad_b
    return v, b


def _balanced(y: np.ndarray) -> np.ndarray:
    pos, neg = float((y > 0).sum()), float((y < 0).sum())
    return np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))


def _mcc(truth: np.ndarray, guess: np.ndarray) -> float:
    tp = float((truth & guess).sum())
    tn = float((~truth & ~guess).sum())
    fp = float((~truth & guess).sum())
    fn = float((truth & ~guess).sum())
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def _fit_abstention(
    names: list[str], x: np.ndarray, abstained: np.ndarray, signals: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """A logistic model of abstaining on the relevance answer and the persona's declared lens
    signals only, each held to its direction (a "yes" to relevance never pushes towards
    abstaining; an `out_of_lens` fact never pushes away from it). Its cut-off is moved to the
    best Matthews correlation on the training data; no model (never abstain) when that
    correlation is not positive."""
    if abstained.sum() < 2 or (~abstained).sum() < 2:
        return 0.0, {}
    used = ["relevance", *signals]
    cols = [names.index(n) for n in used]
    direction = np.array([-1.0, *signals.values()])
    xs = x[:, cols]
    mu, sd = xs.mean(axis=0), np.maximum(xs.std(axis=0), 0.02)
    z = (xs - mu) / sd * direction
    y = np.where(abstained, 1.0, -1.0)
    v, b = _logistic(z, y, _balanced(y), np.zeros(len(used), dtype=bool))
    m = z @ v + b
    best, shift = 0.0, None
    cuts = np.unique(m)
    for j, t in enumerate(cuts):
        score = _mcc(abstained, m >= t)
        if score > best:
            # Halfway to the next margin below: a cut exactly on a training tool would leave
            # that tool to rounding.
            best, shift = score, float((t + cuts[j - 1]) / 2 if j else t - 1.0)
    if shift is None:
        return 0.0, {}
    coef = v * direction / sd
    base = b - shift - float((coef * mu).sum())
    return round(base, 4), {n: round(float(c), 4) for n, c in zip(used, coef, strict=True) if abs(c) > 1e-4}


def fit(
    checklist: Checklist, obs: Sequence[Observation], command: str = "", fitted_on: str = ""
) -> Calibration:
    """Weights, base, yes-rate weight and abstention model from labelled observations."""
    items = checklist.items
    k = len(items)
    names, all_x = feature_matrix(checklist, obs)
    means = {i.id: round(float(all_x[:, j].mean()), 4) for j, i in enumerate(items)} if len(obs) else {}
    if checklist.relevance is not None:
        abstained = np.array([o.ref_verdict == "abstain" for o in obs])
        signals = checklist.relevance.signals
        abstain_base, abstain_weights = _fit_abstention(names, all_x, abstained, signals)
    else:
        abstain_base, abstain_weights = 0.0, {}
    common = dict(
        command=command, fitted_on=fitted_on, means=means, abstain_below=0.0,
        tools=len({o.slug for o in obs}), tools_digest=tools_digest(o.slug for o in obs),
        abstain_base=abstain_base, abstain_weights=abstain_weights,
    )  # fmt: skip
    spoke_idx = [j for j, o in enumerate(obs) if o.ref_verdict in ("ship", "skip")]
    spoke = [obs[j] for j in spoke_idx]
    if len({o.ref_verdict for o in spoke}) < 2:
        # Nothing to separate: keep the lens's default weights and put the base on the labels' side.
        base = 70.0 if spoke and spoke[0].ref_verdict == "ship" else 40.0
        return Calibration(base=base, **common)  # type: ignore[arg-type]
    x = all_x[spoke_idx][:, : k + 1]  # items and yes_rate
    mu = x.mean(axis=0)
    sd = np.maximum(x.std(axis=0), 0.02)
    sign = np.array([i.sign for i in items] + [1.0])
    z = (x - mu) / sd * sign
    y = np.array([1.0 if o.ref_verdict == "ship" else -1.0 for o in spoke])
    free = np.zeros(k + 1, dtype=bool)
    free[k] = True  # the yes-rate is a per-card bias, not a lens: either direction
    v, b = _logistic(z, y, _balanced(y), free)
    margins = z @ v + b
    ref_scores = [o.ref_score for o in spoke if o.ref_score is not None]
    target_sd = statistics.pstdev(ref_scores) if len(ref_scores) > 1 else 15.0
    spread = float(margins.std())
    alpha = min(target_sd / spread, MAX_POINTS_PER_MARGIN) if spread > 1e-6 else 0.0
    coef = alpha * v * sign / sd
    base = SHIP_THRESHOLD + alpha * b - float((coef * mu).sum())
    return Calibration(
        base=round(base, 2),
        weights={i.id: round(float(w), 2) for i, w in zip(items, coef[:k], strict=True)},
        yes_rate_weight=round(float(coef[k]), 2),
        **common,  # type: ignore[arg-type]
    )


def predict(checklist: Checklist, o: Observation) -> Prediction:
    crit = [
        Criterion(id=i.id, label=i.label, weight=checklist.weight(i), p_yes=o.answers.get(i.id))
        for i in checklist.items
    ]
    if abstains(checklist, o.relevance, crit):
        return Prediction(o.slug, "abstain", None)
    score = score_from(checklist, crit)
    return Prediction(o.slug, verdict_for(score), score)


def out_of_fold(checklist: Checklist, obs: Sequence[Observation]) -> list[Prediction]:
    """Leave one tool out: fit on the others, predict it. Every figure built on these is out-of-fold."""
    preds = []
    for k, held in enumerate(obs):
        rest = [o for j, o in enumerate(obs) if j != k]
        fitted = checklist.model_copy(update={"calibration": fit(checklist, rest)})
        preds.append(predict(fitted, held))
    return preds


# The ship curve's own small ridge: it keeps the slope finite where the scores separate the
# labels perfectly (a persona that never errs on the tools it was fitted on).
CURVE_L2 = 0.1
# Points of score per unit the slope is fitted in, so the Newton steps are well scaled.
CURVE_SCALE = 10.0


def ship_curve(scores: Sequence[int], ships: Sequence[bool]) -> dict[str, float] | None:
    """P(the labelled call is ship | the persona's score), as a logistic curve of the score's
    distance from the ship line (Platt scaling), fitted by Newton's method on out-of-fold
    scores, its slope held at zero or above. None with fewer than two of either label, where
    no curve can be told."""
    if sum(ships) < 2 or len(ships) - sum(ships) < 2:
        return None
    x = (np.array(scores, dtype=float) - SHIP_THRESHOLD) / CURVE_SCALE
    y = np.array(ships, dtype=float)
    a, b = 0.0, 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = p * (1 - p)
        g = np.array([((p - y) * x).sum() + CURVE_L2 * a, (p - y).sum()])
        h = np.array([[(w * x * x).sum() + CURVE_L2, (w * x).sum()], [(w * x).sum(), w.sum() + 1e-9]])
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if abs(step).max() < 1e-8:
            break
    if a < 0:
        # A higher score never makes ship less likely: where the scores run against the labels
        # (a persona with no signal), the curve is flat at the share of ships.
        a, b = 0.0, float(np.log(y.mean() / (1 - y.mean())))
    return {"slope": round(a / CURVE_SCALE, 5), "intercept": round(b, 5)}


def ship_chance(curve: dict[str, float] | None, score: int | None) -> float | None:
    """A persona's P(ship) at this score on its fitted curve; None without a curve or a score."""
    if not curve or score is None:
        return None
    z = curve["slope"] * (score - SHIP_THRESHOLD) + curve["intercept"]
    return round(float(1.0 / (1.0 + np.exp(-z))), 4)
