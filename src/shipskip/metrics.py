"""Statistics an evaluation reports, over plain sequences: agreement beyond chance, rank
correlation, F1, balanced accuracy, bootstrap percentiles, expected calibration error."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Agreement beyond chance between two raters over the same items."""
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return round((observed - expected) / (1 - expected), 3)


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return round(num / den, 3) if den else None


def f1(truth: Sequence[bool], guess: Sequence[bool]) -> float | None:
    tp = sum(t and g for t, g in zip(truth, guess, strict=True))
    fp = sum(g and not t for t, g in zip(truth, guess, strict=True))
    fn = sum(t and not g for t, g in zip(truth, guess, strict=True))
    return round(2 * tp / (2 * tp + fp + fn), 3) if (tp + fp + fn) else None


def percentiles(values: list[float]) -> list[float] | None:
    """The 2.5th and 97.5th percentiles (nearest rank), or None with nothing to rank."""
    if not values:
        return None
    xs = sorted(values)
    lo, hi = xs[int(0.025 * (len(xs) - 1))], xs[math.ceil(0.975 * (len(xs) - 1))]
    return [round(lo, 3), round(hi, 3)]


FLIP_BINS = 10  # equal-width bins of the flip chance, as expected calibration error is usually taken


def calibration_error(pairs: list[tuple[float, bool]]) -> tuple[float | None, list[dict]]:
    """Expected calibration error: per bin, |mean chance - share that flipped|, weighed by the
    bin's share of the panels; and the bins themselves (a reliability table)."""
    if not pairs:
        return None, []
    total, table = 0.0, []
    for b in range(FLIP_BINS):
        inside = [(p, e) for p, e in pairs if min(int(p * FLIP_BINS), FLIP_BINS - 1) == b]
        if not inside:
            continue
        chance = statistics.fmean(p for p, _ in inside)
        flipped = sum(e for _, e in inside) / len(inside)
        total += abs(chance - flipped) * len(inside)
        table.append({"bin": f"{b / FLIP_BINS:.1f}-{(b + 1) / FLIP_BINS:.1f}", "panels": len(inside),
                      "mean_chance": round(chance, 3), "flipped": round(flipped, 3)})  # fmt: skip
    return round(total / len(pairs), 3), table


def balanced_accuracy(pos: Sequence[bool], neg: Sequence[bool]) -> float | None:
    """The mean of the hit rates on each class (`pos`: right on the positives, `neg`: right on
    the negatives), so a guesser that always says the common class scores 0.5; None without both."""
    return round((sum(pos) / len(pos) + sum(neg) / len(neg)) / 2, 3) if pos and neg else None
