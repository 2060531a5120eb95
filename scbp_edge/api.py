"""The importable API behind the CLI: open a seed, list its space, derive candidates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from scbp_edge.derive import Deriver
from scbp_edge.derive.bounded import bounded
from scbp_edge.derive.costs import CostModel
from scbp_edge.derive.io import save_derived
from scbp_edge.derive.reconstruct import Reconstruction, SeedTargets, reconstruct
from scbp_edge.derive.refine import STEPS as REFINE_STEPS
from scbp_edge.derive.refine import refine
from scbp_edge.records.codec import encode
from scbp_edge.records.config import SeedOptions, check_seed_options
from scbp_edge.records.reconstruction import Refined
from scbp_edge.seeds import Seed, default_spec, load_seed
from scbp_edge.segments import Segmentation, segment_model
from scbp_edge.space import Candidate, build_space, candidate_id, parse_ratios


def calibration_images(spec, data: str, n: int, warn: Callable[[str], None] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (seeded sample) of ``data``'s train split at the seed's input, normalised, with labels.

    ``warn`` hears each problem met while reading (empty class folders, unreadable images left out), as a build
    prints them.
    """
    import numpy as np

    from scbp_edge.data import load_dataset, read_warnings

    train, test = load_dataset(data, spec.input_shape[1:], spec.input_shape[0])
    for line in read_warnings(train, test) if warn else ():
        warn(line)
    pick = np.random.default_rng(2).permutation(len(train))[: min(n, len(train))]
    return train.subset(pick).tensors(spec.mean, spec.std)


class Workbench:
    """A seed, its segmentation and a deriver, built once and reused for many candidates."""

    def __init__(self, opts: SeedOptions, seed: Seed | None = None) -> None:
        check_seed_options(opts)
        self.opts = opts
        if seed is None:
            shape = None
            if opts.input_size or opts.in_channels:
                base = default_spec(opts.seed).input_shape
                size = opts.input_size or base[1]
                shape = (opts.in_channels or base[0], size, size)
            seed = load_seed(opts.seed, opts.weights, num_classes=opts.num_classes, input_shape=shape)
        self.seed = seed
        with bounded("finding the seed's blocks", seed.model, opts.trace_timeout):
            self.segmentation: Segmentation = segment_model(seed.model, seed.spec.input_shape, opts.segments)
        self._targets: SeedTargets | None = None
        self._no_reconstruction = "no calibration data (give --data)"
        self._refine: tuple[int, float | None] = (0, None)

    def calibrate(self, x: torch.Tensor | None, y: torch.Tensor | None = None, *, criterion: str = "l1",
                  reconstruct: bool = True, residual: bool = True, refine_steps: int = 0,
                  refine_seconds: float | None = None) -> None:
        """Use calibration images (and labels) to choose channels by ``criterion`` and to re-solve weights.

        With ``reconstruct`` every derived network is re-solved layer by layer
        against the seed on ``x`` (:mod:`scbp_edge.derive.reconstruct`); without
        data, or with ``reconstruct=False``, networks keep their inherited
        weights and their records say why.  ``residual``: each residual writer is
        fitted to the seed's residual sum minus the pruned network's own shortcut
        (:mod:`scbp_edge.derive.residual`) instead of its own output.
        ``refine_steps``: after the solve, distil each network from the seed on
        ``x`` for this many steps (:mod:`scbp_edge.derive.refine`; 0: none), in at
        most ``refine_seconds`` per network.
        """
        self._refine = (refine_steps, refine_seconds)
        if criterion != "l1" or self.deriver.graph.criterion != "l1":
            self.deriver.graph.score(criterion, x, y)
        self._targets = None
        if x is None or len(x) == 0:
            self._no_reconstruction = "no calibration data (give --data)"
        elif not reconstruct:
            self._no_reconstruction = "turned off (--no-reconstruct)"
        else:
            self._targets = SeedTargets(self.seed.model, x, residual=residual)

    @cached_property
    def deriver(self) -> Deriver:
        """The pruning analysis (built on first use: listing segments does not need it)."""
        with bounded("Torch-Pruning's dependency analysis", self.seed.model, self.opts.trace_timeout):
            return Deriver(self.seed, self.segmentation, self.opts.round_to or 8)

    @cached_property
    def costs(self) -> CostModel:
        """Analytic costs of any configuration (no derivation)."""
        return CostModel(self.deriver)

    def static(self, ratios: Sequence[float], scopes: Sequence[str] = ()) -> Candidate:
        """The candidate record of ``ratios`` (and ``scopes``) with its params, MACs and size, from the plan."""
        scopes = self.deriver.scopes(ratios, scopes)
        params, macs, size, seg = self.costs.cost(list(ratios), scopes)
        return Candidate(candidate_id(self.seed.spec.name, ratios, scopes=scopes), list(ratios),
                         "seed" if not any(ratios) else None, params, macs, size, {"segment_macs": seg},
                         list(scopes))

    @property
    def num_segments(self) -> int:
        return len(self.segmentation.segments)

    def candidate(self, ratios: Sequence[float], *, for_training: bool = False,
                  scopes: Sequence[str] = ()) -> tuple[Candidate, nn.Module]:
        """Derive one configuration (checked against the masked seed), then reconstruct it where calibrated.

        ``for_training``: the fine-tune's starting point, whose classifier head stays
        inherited (re-solving it helps the network as it is, and costs about a point
        after a fine-tune: benchmarks/results/reconstruct_cifar-resnet*.md).  The candidate's
        ``extra["reconstruction"]`` says what reconstruction did.  ``scopes``: what
        each segment cuts (:meth:`scbp_edge.derive.Deriver.plan`).
        """
        cand, model, _ = self.derive(ratios, for_training=for_training, scopes=scopes)
        return cand, model

    def derive(self, ratios: Sequence[float], *, for_training: bool = False, scopes: Sequence[str] = ()
               ) -> tuple[Candidate, nn.Module, Reconstruction]:
        """:meth:`candidate`, plus the full reconstruction record (with its per-layer errors, which are not stored)."""
        cand, model = self.static(ratios, scopes), self.deriver.derive(ratios, scopes=scopes)
        skip = self.head_layers if for_training else ()
        rec = self._reconstruct(model, self.deriver.plan(ratios, scopes), skip, for_training)
        cand.extra["reconstruction"] = encode(rec)  # as stored with the candidate (without per_layer)
        return cand, model, rec

    def _reconstruct(self, model: nn.Module, plan: dict[str, int], skip: tuple[str, ...],
                     for_training: bool) -> Reconstruction:
        kept = self.deriver.graph.kept_outputs(plan)
        if not kept:  # nothing was removed: the seed's own weights are already the solution
            return Reconstruction.skipped("nothing pruned")
        if self._targets is None:
            return Reconstruction.skipped(self._no_reconstruction)
        rec = reconstruct(model, self._targets, kept, skip=skip, for_training=for_training)
        steps, seconds = self._refine
        if steps > 0:
            rec = replace(rec, refined=self.refine(model, seconds, steps))
        return rec

    def refine(self, model: nn.Module, seconds: float | None = None, steps: int = REFINE_STEPS) -> Refined | None:
        """Distil a derived ``model`` from the seed on the calibration images (:mod:`scbp_edge.derive.refine`), in
        place, for ``steps`` within ``seconds``; None without calibration images."""
        if self._targets is None:
            return None
        return refine(model, self.seed.model, self._targets.x, steps, seconds=seconds)

    @cached_property
    def head_layers(self) -> tuple[str, ...]:
        """Weighted layers of the segmentation's head (the classifier): left inherited for a fine-tune."""
        head = self.segmentation.head
        return tuple(n for n, m in self.seed.model.named_modules() if any(True for _ in m.parameters(recurse=False))
                     and any(n == h or n.startswith(h + ".") for h in head))

    def space(
        self,
        ratios: str,
        *,
        monotone: bool = False,
        exclude: Sequence[str] = (),
        limit: int | None = None,
        sample_seed: int = 0,
        max_params: int | None = None,
        max_macs: int | None = None,
        scope: str = "stream",
    ) -> list[Candidate]:
        """The candidate list with static costs (from the pruning plan: nothing is derived).

        ``scope``: what each segment's ratio cuts, ``stream``, ``inner`` or ``both`` (:func:`scope_variants`).
        """
        costs: dict[tuple, Candidate] = {}

        def cost(config: tuple[float, ...], scopes: tuple[str, ...]) -> Candidate:
            if (config, scopes) not in costs:
                costs[(config, scopes)] = self.static(config, scopes)
            return costs[(config, scopes)]

        keep = None
        if max_params is not None or max_macs is not None:

            def keep(c: tuple[float, ...], s: tuple[str, ...]) -> bool:
                got = cost(c, s)
                return (max_params is None or got.params <= max_params) and (  # type: ignore[operator]
                    max_macs is None or got.macs <= max_macs  # type: ignore[operator]
                )

        sets = parse_ratios(ratios, self.num_segments)
        inner = self.deriver.stream_segments if scope != "stream" else frozenset()
        cands = build_space(
            self.seed.spec.name, sets, monotone=monotone, exclude=exclude, limit=limit,
            sample_seed=sample_seed, keep=keep, scope=scope, inner_segments=inner,
        )
        cands = self._dedupe(cands)
        for c in cands:
            full = cost(tuple(c.ratios), tuple(c.scopes))
            c.params, c.macs, c.size_bytes = full.params, full.macs, full.size_bytes
            c.extra.update(full.extra)
        return cands

    def _dedupe(self, cands: list[Candidate]) -> list[Candidate]:
        """Drop configurations that round to the very same network as an earlier one.

        With a channel multiple, small ratios on narrow segments can keep every
        filter (or the same count); measuring such twins again is wasted work.
        The kept candidate lists its twins in ``extra["same_network_as"]``.
        """
        seen: dict[tuple, Candidate] = {}
        out = []
        for c in cands:
            key = tuple(sorted(self.deriver.plan(c.ratios, c.scopes).items()))
            if key in seen and not c.reference:
                seen[key].extra.setdefault("same_network_as", []).append(c.id)
                continue
            seen.setdefault(key, c)
            out.append(c)
        return out

    def save(self, ratios: Sequence[float], path: str | Path, scopes: Sequence[str] = ()) -> Path:
        """Derive ``ratios`` (and ``scopes``) and write it as a loadable derived-model file."""
        return self.write(*self.candidate(ratios, scopes=scopes), path)

    def write(self, cand: Candidate, model: nn.Module, path: str | Path) -> Path:
        """Write a derived ``model`` (from :meth:`candidate`) as a loadable file, with how its weights were made."""
        ratios = cand.ratios
        return save_derived(
            path, model, self.seed.spec, ignored=self.deriver.ignored,
            keep=self.deriver.plan(ratios, cand.scopes), ratios=list(ratios), candidate_id=cand.id,
            extra={"reconstruction": cand.extra["reconstruction"], "criterion": self.deriver.graph.criterion},
        )
