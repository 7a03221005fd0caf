"""What a build leaves out, and why: no image, sequence or condition is dropped silently (issue 16).

`dropped_of` collects, after the registration, every image without a world pose (skipped at feature
extraction, or not registered), every sequence without a model of its own or not brought into the
world frame, each with its cause and a hint, and every condition none of whose images registered.
The build prints them in its summary and records them in `dataset.json` (`"dropped"`,
docs/FORMAT.md §3).

Some losses make the result incomplete (`Failure`): a manifest of one condition, a condition that
lost all its images, no 3D point at all, no cross-condition pair. `accept` turns them into a
`PartialBuildError` naming the stage and the causes, unless the build was asked to accept them
(`--allow-partial`), in which case they are logged and recorded under `accepted`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import pandas as pd

from xseason.core.errors import XSeasonError
from xseason.inputs.manifest import ImageRecord, Manifest
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import FeatureIndex
from xseason.sfm.reconstruction import ModelStatus, SequenceModels
from xseason.sfm.results import Registration, SequenceResult, SequenceStatus
from xseason.store.reader import pair_conditions

log = logging.getLogger(__name__)

ALLOW = "--allow-partial"  # how a user accepts an incomplete result (`run_build(allow_partial=True)`)
MAX_IN_MESSAGE = 6  # sequences named in one error message; the summary lists them all


@dataclass
class DroppedImage:
    """An image of the manifest without a world pose: skipped at `features`, or not registered."""

    image: str
    sequence: str
    condition: str
    stage: str  # "features" (unreadable file, unusable mask, size unlike its camera) or "registration"
    reason: str


@dataclass
class DroppedSequence:
    """A sequence without a model of its own (`reconstruction`) or not brought into the world frame
    (`registration`); its images may still have been registered one by one (`registered`)."""

    sequence: str
    condition: str
    stage: str
    reason: str
    hint: str
    images: int
    registered: int

    def describe(self) -> str:
        return (
            f"sequence {self.sequence!r} ({self.condition}, {self.registered} of {self.images} images "
            f"registered): {self.reason} (hint: {self.hint})"
        )


@dataclass
class DroppedCondition:
    """A condition none of whose images has a world pose."""

    condition: str
    images: int
    reason: str


@dataclass
class Failure:
    """A loss that makes the result incomplete: the stage that found it and what it is."""

    stage: str
    reason: str

    def describe(self) -> str:
        return f"{self.stage}: {self.reason}"


@dataclass
class Dropped:
    """Everything a build dropped, with the causes (module doc); `accepted`: the failures the build
    was asked to accept (empty in a complete build)."""

    images: list[DroppedImage] = field(default_factory=list)
    sequences: list[DroppedSequence] = field(default_factory=list)
    conditions: list[DroppedCondition] = field(default_factory=list)
    accepted: list[Failure] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.images or self.sequences or self.conditions or self.accepted)

    def to_json(self) -> dict:
        return {
            "images": [asdict(x) for x in self.images],
            "sequences": [asdict(x) for x in self.sequences],
            "conditions": [asdict(x) for x in self.conditions],
            "accepted": [asdict(x) for x in self.accepted],
        }

    @classmethod
    def from_json(cls, data: dict | None) -> Dropped:
        """The losses recorded in a dataset.json (none for a dataset written before they were)."""
        data = data or {}
        return cls(
            [DroppedImage(**x) for x in data.get("images", [])],
            [DroppedSequence(**x) for x in data.get("sequences", [])],
            [DroppedCondition(**x) for x in data.get("conditions", [])],
            [Failure(**x) for x in data.get("accepted", [])],
        )

    def format(self) -> list[str]:
        """The summary's lines: every loss with its cause."""
        if not self:
            return ["dropped: nothing (every image of the manifest has a world pose)"]
        lines = ['dropped (recorded in dataset.json, "dropped"):']
        if self.accepted:
            lines.append(f"  incomplete, accepted with {ALLOW}:")
            lines += [f"    {f.describe()}" for f in self.accepted]
        if self.conditions:
            lines.append("  conditions without a registered image:")
            lines += [f"    {c.condition}: {c.reason}" for c in self.conditions]
        if self.sequences:
            lines.append("  sequences without a model or not registered:")
            lines += [f"    [{s.stage}] {s.describe()}" for s in self.sequences]
        if self.images:
            lines.append(f"  images without a pose ({len(self.images)}):")
            lines += [f"    [{i.stage}] {i.image} ({i.sequence}): {i.reason}" for i in self.images]
        return lines


class PartialBuildError(XSeasonError):
    """A build whose result is incomplete (`Failure`s): the message names the stage, the causes and
    the sequences behind them; `--allow-partial` accepts such a result."""

    def __init__(self, failures: list[Failure], losses: Dropped | None = None, tail: str | None = None):
        self.failures = failures
        self.stage = failures[0].stage
        causes = "; ".join(f.reason if f.stage == self.stage else f.describe() for f in failures)
        sequences = [s for s in (losses.sequences if losses else []) if s.describe() not in causes]
        if sequences:
            named = "; ".join(s.describe() for s in sequences[:MAX_IN_MESSAGE])
            more = len(sequences) - MAX_IN_MESSAGE
            rest = f"; ... and {more} more (build_summary.json in the work folder lists all)"
            causes += f"; sequences without a model or not registered: {named}" + (rest if more > 0 else "")
        if tail is None:
            tail = (
                f"No dataset was written; pass {ALLOW} to write it without what was lost (the work "
                "folder keeps what was computed, so that rerun is quick)"
            )
        super().__init__(f"incomplete build (stage {self.stage}): {causes}. {tail}")


def one_condition(manifest: Manifest) -> Failure | None:
    """A manifest of a single condition: no cross-condition pair is possible (checked before any work)."""
    conditions = manifest.conditions()
    if len(conditions) > 1:
        return None
    return Failure(
        "manifest",
        f"the manifest holds one condition ({conditions[0]!r}): a cross-condition pair needs images of "
        "two conditions or more; add another condition's images",
    )


def dropped_of(
    manifest: Manifest,
    index: FeatureIndex,
    models: SequenceModels,
    registration: Registration,
    cfg: SfMConfig,
) -> Dropped:
    """Every image without a pose, sequence without a model or not registered, and condition without a
    registered image, with their causes (module doc)."""
    condition_of = {r.sequence: r.condition for r in manifest.images}
    images = [
        DroppedImage(
            name,
            result.sequence,
            condition_of[result.sequence],
            "features" if name in index.skipped else "registration",
            result.reason or "not registered",
        )
        for name, result in registration.images.items()
        if not result.registered
    ]
    registered: dict[str, int] = {}
    for result in registration.images.values():
        registered[result.sequence] = registered.get(result.sequence, 0) + int(result.registered)
    sequences = []
    for seq, recs in manifest.sequences().items():
        own, result = models.status[seq], registration.sequences.get(seq)
        if own.ok and (result is None or result.status is not SequenceStatus.FAILED):
            continue
        readable = len(index.names(recs))
        if not own.ok:
            stage, reason = "reconstruction", f"no model: {own.reason}"
            hint = _model_hint(manifest, own, recs, readable, cfg)
        else:
            stage, reason = "registration", _not_aligned(result)
            hint = _alignment_hint(cfg)
        sequences.append(
            DroppedSequence(seq, condition_of[seq], stage, reason, hint, len(recs), registered.get(seq, 0))
        )
    conditions = []
    for condition in manifest.conditions():
        seqs = [s for s, c in condition_of.items() if c == condition]
        if any(registered.get(s, 0) for s in seqs):
            continue
        n = sum(len(manifest.sequences()[s]) for s in seqs)
        conditions.append(DroppedCondition(condition, n, f"none of its {n} images registered"))
    return Dropped(images, sequences, conditions)


def _not_aligned(result: SequenceResult) -> str:
    """Why a sequence with a model was not brought into the world frame, each attempt's cause."""
    attempts = [
        f"{what}: {fit.reason}"
        for what, fit in (("by absolute pose", result.pose_fit), ("by 3D-3D matches", result.point_fit))
        if fit is not None and fit.reason
    ]
    return "not brought into the world frame: " + ("; ".join(attempts) or str(result.failure))


def _model_hint(
    manifest: Manifest, own: ModelStatus, recs: list[ImageRecord], readable: int, cfg: SfMConfig
) -> str:
    """What may help a sequence without a model, from its size, poses and intrinsics."""
    rcfg = cfg.reconstruction
    skipped = len(recs) - readable
    unreadable = f" ({skipped} of its {len(recs)} images skipped as unusable)" if skipped else ""
    if manifest.is_posed(recs[0].sequence):
        if readable < 2:
            return f"a posed sequence needs 2 readable images or more, it has {readable}{unreadable}"
        return (
            "its images share too few verified matches with enough parallax: more overlap between "
            f"neighbouring images, or lower reconstruction.min_tri_angle ({rcfg.min_tri_angle})"
        )
    if readable < rcfg.min_model_size:
        return (
            f"too few images: {readable} readable{unreadable}, fewer than reconstruction.min_model_size = "
            f"{rcfg.min_model_size} (smaller models are discarded): add images, give the sequence's "
            "poses, or lower reconstruction.min_model_size"
        )
    intrinsics = (
        "; give its intrinsics (camera_model, camera_params)"
        if any(r.camera_params is None for r in recs)
        else ""
    )
    if "min_model_size" in (own.reason or ""):
        return (
            "its images form only small models: more overlap between neighbouring images, or lower "
            f"reconstruction.min_model_size ({rcfg.min_model_size}){intrinsics}"
        )
    return (
        "no initial pair: more overlap between neighbouring images (too few, or too far apart), or "
        f"lower reconstruction.init_min_num_inliers ({rcfg.init_min_num_inliers}) / init_min_tri_angle "
        f"({rcfg.init_min_tri_angle}){intrinsics}"
    )


def _alignment_hint(cfg: SfMConfig) -> str:
    reg = cfg.registration
    return (
        "too little overlap with the sequences already in the world frame: add images of the same "
        "places, give the sequence's poses or position priors (prior_x, prior_y, prior_z), or lower "
        f"registration.min_inliers ({reg.min_inliers}) / registration.pnp_min_inliers ({reg.pnp_min_inliers})"
    )


def lost_conditions(losses: Dropped) -> list[Failure]:
    """A failure per condition that lost all its images, naming its sequences' causes."""
    failures = []
    for lost in losses.conditions:
        causes = [s.describe() for s in losses.sequences if s.condition == lost.condition]
        if not causes:  # its sequences have models, yet no image registered: the images' own causes
            mine = [i for i in losses.images if i.condition == lost.condition]
            causes = [f"image {mine[0].image!r}: {mine[0].reason}"] + (
                [f"and {len(mine) - 1} more image(s)"] if len(mine) > 1 else []
            )
        failures.append(
            Failure(
                "registration",
                f"condition {lost.condition!r} lost all its {lost.images} images: {'; '.join(causes)}",
            )
        )
    return failures


def no_points() -> Failure:
    """Nothing to associate: no registered model holds a 3D point (the sequences' causes follow)."""
    return Failure("reconstruction", "no sequence has a model with 3D points to make pairs from")


def no_cross_pair(images: pd.DataFrame, pairs: pd.DataFrame) -> Failure | None:
    """The result holds no pair of images of two different conditions."""
    conditions = pair_conditions(images, pairs)
    if (conditions["reference"] != conditions["condition"]).any():
        return None
    found = sorted(images.loc[images["registered"], "condition"].unique())
    if len(found) < 2:
        why = f"only {found[0]!r} has registered images" if found else "no image is registered"
    else:
        why = (
            f"the registered images of {', '.join(map(repr, found))} share no 3D points, or too few "
            "(correspondences.min_matches, min_overlap)"
        )
    return Failure("correspondences", f"no cross-condition pair: {why}")


def accept(
    failures: list[Failure | None], losses: Dropped, allow_partial: bool, tail: str | None = None
) -> None:
    """Raise a `PartialBuildError` for `failures` (None entries ignored), or, with `allow_partial`, log
    them and record them in `losses.accepted`."""
    failures = [f for f in failures if f is not None]
    if not failures:
        return
    if not allow_partial:
        raise PartialBuildError(failures, losses, tail)
    for failure in failures:
        log.warning("incomplete result accepted (%s): %s", ALLOW, failure.describe())
    losses.accepted += failures


__all__ = [
    "DroppedCondition",
    "DroppedImage",
    "DroppedSequence",
    "Failure",
    "Dropped",
    "PartialBuildError",
    "accept",
    "dropped_of",
    "lost_conditions",
    "no_cross_pair",
    "no_points",
    "one_condition",
]
