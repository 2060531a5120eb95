"""The SCBP search space: the set product of per-segment c-ratio sets.

Set transformations (monotone, exclude patterns, budgets, seeded sampling)
shrink the product; the seed itself and every uniform configuration (one
ratio everywhere, i.e. a MobileNet-style width multiplier) always stay in as
reference points.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scbp_edge.errors import SpaceError

Config = tuple[float, ...]
Scopes = tuple[str, ...]  # one of derive.SCOPES per segment; () when every segment cuts its stream


@dataclass
class Candidate:
    """One derived-model configuration and its static figures; JSON-serialisable."""

    id: str
    ratios: list[float]
    reference: str | None = None  # "seed" or "uniform" for reference points
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: what each segment's ratio cuts ("stream" or "inner"); empty: every segment cuts its stream
    scopes: list[str] = field(default_factory=list)


def _ratio(text: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise SpaceError(f"'{text}' in --ratios is not a number; write e.g. --ratios 0,0.25,0.5") from None
    if not 0.0 <= r < 1.0:
        raise SpaceError(
            f"c-ratio {r} is outside [0, 1): it is the fraction of filters removed, and 1 would leave "
            "a layer empty"
        )
    return r


#: --scope: what each segment's ratio may cut; ``both`` tries each nonzero ratio with either
SCOPE_MODES = ("stream", "inner", "both")
_MARKS = {"i": "inner", "s": "stream"}


def _scoped(text: str, flag: str) -> tuple[float, str | None]:
    """``0.5`` (no scope named), ``0.5i`` (inner) or ``0.5s`` (stream), as one item of ``flag``."""
    scope = _MARKS.get(text[-1:].lower()) if text[:-1] else None
    number = text[:-1] if scope else text
    try:
        float(number)
    except ValueError:
        raise SpaceError(f"'{text}' in {flag} is neither a ratio nor a ratio with a scope; write e.g. 0.5 "
                         "(the segment's stream too), 0.5i (only the insides of its blocks) or 0.5s") from None
    return _ratio(number), scope


def split_list(text: str, flag: str, example: str, sep: str = ",") -> list[str]:
    """The items of a comma-separated option; an empty item (``0,,0.5``, a trailing comma, ``--flag=``) is refused.

    Every list option reads through here, so an empty item means the same everywhere: a typo, said in one line.
    """
    items = [x.strip() for x in text.split(sep)]
    if any(not x for x in items):
        raise SpaceError(f"{flag} '{text}' has an empty item; give a list such as {example}")
    return items


def parse_ratios(text: str, num_segments: int) -> list[list[float]]:
    """``"0,0.25,0.5"`` (same set everywhere) or ``"0,0.25/0,0.5/..."`` (one set per segment)."""
    parts = [p for p in text.strip().split("/")]
    if any(not p.strip() for p in parts):
        raise SpaceError(f"--ratios '{text}' has an empty set; give at least one ratio per segment")
    sets = [sorted({_ratio(x) for x in split_list(p, "--ratios", "0,0.25,0.5")}) for p in parts]
    if len(sets) == 1:
        return sets * num_segments
    if len(sets) != num_segments:
        raise SpaceError(
            f"--ratios gives {len(sets)} per-segment sets but there are {num_segments} segments; "
            "give one set, or one per segment separated by '/'"
        )
    return sets


def parse_config(text: str, num_segments: int, default: str = "stream") -> tuple[Config, Scopes]:
    """``"0.5i,0.25,0"``: one ratio per segment, ``i`` where it cuts only the insides of the segment's blocks.

    Returns the ratios and the scopes (empty when no segment names ``inner``); an item without ``i`` or ``s``
    takes ``default`` (``--scope``).
    """
    if default not in ("stream", "inner"):
        raise SpaceError(f"--scope '{default}' names no single network; use stream or inner with --config")
    items = [_scoped(x, "--config") for x in split_list(text, "--config", "0.5,0.25,0")]
    if len(items) != num_segments:
        raise SpaceError(
            f"--config '{text}' has {len(items)} ratio(s); this seed has {num_segments} segments"
        )
    scopes = tuple(s or default for _, s in items)
    return tuple(r for r, _ in items), scopes if "inner" in scopes else ()


def _fmt(r: float) -> str:
    pct = round(r * 100, 1)
    return (f"{pct:g}").replace(".", "p")


def candidate_id(seed_name: str, ratios: Sequence[float], precision: str | None = None,
                 scopes: Sequence[str] = ()) -> str:
    """Stable, readable id such as ``resnet18_r50-25i-0-0_int8``: percent removed per segment, then precision.

    A segment whose scope is ``inner`` (only the insides of its blocks are cut) carries an ``i``.  No dots:
    ``50.25`` would read as a decimal.  Without ``precision`` it names the network.
    """
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", seed_name.split(":")[-1])
    marks = [("i" if s == "inner" else "") for s in scopes] or [""] * len(ratios)
    net = f"{base}_r" + "-".join(_fmt(r) + m for r, m in zip(ratios, marks))
    return f"{net}_{precision}" if precision else net


def _matches(pattern: str, config: Config, scopes: Scopes) -> bool:
    """Whether ``config`` matches an --exclude pattern: ``*``, a ratio (either scope) or a ratio with ``i``/``s``."""
    items = [p.strip() for p in pattern.split(",")]
    if len(items) != len(config):
        raise SpaceError(
            f"--exclude '{pattern}' has {len(items)} entries but there are {len(config)} segments; "
            "use one ratio or '*' per segment"
        )
    own = scopes or ("stream",) * len(config)
    for item, r, scope in zip(items, config, own):
        if item == "*":
            continue
        want, want_scope = _scoped(item, "--exclude")
        if abs(want - r) >= 1e-9 or (want_scope is not None and want_scope != scope):
            return False
    return True


def scope_variants(config: Config, mode: str, inner_segments: frozenset[int]) -> list[Scopes]:
    """The scopes ``config`` is tried with under ``--scope mode``, each in canonical form.

    ``inner_segments``: segments where ``inner`` is a different network (they hold a residual stream).  A
    segment at ratio 0, or without a stream, only ever cuts ``stream``, so a network without residual adds
    gets no second copy of any candidate.
    """
    if mode not in SCOPE_MODES:
        raise SpaceError(f"--scope '{mode}' is not one of {', '.join(SCOPE_MODES)}")
    free = [i for i, r in enumerate(config) if r > 0 and i in inner_segments]
    if mode == "stream" or not free:
        return [()]
    picks = [tuple(free)] if mode == "inner" else [
        tuple(i for i, on in zip(free, flags) if on) for flags in itertools.product((False, True), repeat=len(free))]
    return [tuple("inner" if i in chosen else "stream" for i in range(len(config))) if chosen else ()
            for chosen in picks]


def build_space(
    seed_name: str,
    ratio_sets: Sequence[Sequence[float]],
    *,
    monotone: bool = False,
    exclude: Sequence[str] = (),
    limit: int | None = None,
    sample_seed: int = 0,
    keep: Callable[[Config, Scopes], bool] | None = None,
    scope: str = "stream",
    inner_segments: frozenset[int] = frozenset(),
) -> list[Candidate]:
    """Candidates of the set product after the transformations, references always included.

    ``keep`` is a budget predicate (e.g. params/MACs under a cap) applied to
    non-reference configurations.  ``scope`` and ``inner_segments``: see :func:`scope_variants`; the
    references (the seed, uniform widths) always cut the stream, as a width multiplier does.
    """
    product: list[Config] = [tuple(c) for c in itertools.product(*ratio_sets)]
    common = sorted(set.intersection(*(set(s) for s in ratio_sets)))
    references: dict[Config, str] = {tuple(r for _ in ratio_sets): "uniform" for r in common}
    references[tuple(0.0 for _ in ratio_sets)] = "seed"
    chosen = [(c, s) for c in product for s in scope_variants(c, scope, inner_segments)
              if s or c not in references]
    if monotone:
        chosen = [(c, s) for c, s in chosen if all(a <= b for a, b in zip(c, c[1:]))]
    for pattern in exclude:
        chosen = [(c, s) for c, s in chosen if not _matches(pattern, c, s)]
    if keep is not None:
        chosen = [(c, s) for c, s in chosen if keep(c, s)]
        if not chosen and not any(keep(c, ()) for c in references):
            raise SpaceError(
                "no candidate meets the budgets (--max-params/--max-macs); raise them or allow larger ratios"
            )
    if limit is not None:
        if limit < 1:
            raise SpaceError(f"--limit {limit} must be at least 1")
        if len(chosen) > limit:
            chosen = sorted(random.Random(sample_seed).sample(chosen, limit))
    configs = [(c, ()) for c in sorted(references)] + chosen
    return [Candidate(candidate_id(seed_name, c, scopes=s), list(c), None if s else references.get(c), scopes=list(s))
            for c, s in configs]


@dataclass(frozen=True)
class SegmentProbe:
    """One segment pruned alone at ``ratio``: its measured speed-up and its proxy-accuracy drop (points)."""

    segment: int
    ratio: float
    speedup: float
    accuracy_drop: float


def ratio_sets_from_sensitivity(
    probes: Sequence[SegmentProbe], num_segments: int, min_gain: float = 0.01
) -> list[list[float]]:
    """Per-segment ratio sets that keep only ratios which buy measured speed for their accuracy.

    Per segment, ratios are taken from the least to the most damaging; one is
    kept only if its measured speed-up beats every kept, less damaging ratio
    (ratio 0 included, at 1.0x) by more than ``min_gain``.  A ratio whose
    channel count the target runs no faster (a width padded back up by the
    kernel's vector blocks, say) therefore leaves the set, and so does one that
    another ratio beats on both speed and accuracy.  A segment without probes
    keeps only ratio 0: there is no evidence that pruning it pays.
    """
    if any(p.segment >= num_segments or p.segment < 0 for p in probes):
        raise SpaceError(f"a sensitivity probe names a segment outside 0..{num_segments - 1}")
    sets: list[list[float]] = []
    for seg in range(num_segments):
        mine = sorted((p for p in probes if p.segment == seg and p.ratio > 0),
                      key=lambda p: (p.accuracy_drop, -p.speedup))
        kept, best = [0.0], 1.0
        for p in mine:
            if p.speedup > best * (1.0 + min_gain):
                kept.append(p.ratio)
                best = p.speedup
        sets.append(sorted(kept))
    return sets
