"""What the registration stage returns: per sequence how it reached the world frame, per image its pose.

`Registration` holds the registered models in memory and writes / reads `registration.json`
(`to_json` / `from_json`), the stage's cache and what the reports read. Its layout, per sequence:
- `status`: "world" (defines the world frame), "aligned" (brought into it) or "failed";
- the similarity own frame -> world (`scale`, `R`, `t`) of world and aligned sequences;
- an alignment on absolutely posed images: `method` "absolute_pose", `located_images`, `inliers`,
  residuals; one by 3D-3D matches: `correspondences`, `prior_check`, `inliers`, `inlier_ratio`,
  `inlier_threshold`, residuals, and the failed pose fit before it under `absolute_pose`; a
  sequence aligned only after its images were registered one by one keeps its first attempt
  under `first_attempt`; a failure says why (`reason`);
- `model` (its own model's status.json), `refine_*_shift_median*` (how far the joint refinement
  moved its cameras), `final_model`, `folder` (of its registered model) and `registered_images`.
Per image: `sequence`, `registered`, `method` ("sequence": with its aligned model,
"absolute_pose": on its own, then `pnp_inliers` / `pnp_matches`) or the `reason` it has no pose.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import TypeVar

import numpy as np
import pycolmap

from xseason.sfm.reconstruction import ModelStatus
from xseason.sfm.sim3 import Similarity


class SequenceStatus(str, Enum):
    WORLD = "world"  # one of the sequences that define the world frame
    ALIGNED = "aligned"  # brought into the world frame
    FAILED = "failed"  # not in the world frame (its images may still be registered one by one)


class PoseMethod(str, Enum):
    """How an image got its world pose."""

    SEQUENCE = "sequence"  # with its sequence's model
    ABSOLUTE_POSE = "absolute_pose"  # on its own, against the joint model's points


def _status(similarity: Similarity | None) -> str:
    return (SequenceStatus.FAILED if similarity is None else SequenceStatus.ALIGNED).value


def _similarity_json(sim: Similarity) -> dict:
    return {
        "scale": float(sim.scale),
        "R": np.asarray(sim.rotation).tolist(),
        "t": np.asarray(sim.translation).tolist(),
    }


def _similarity_from_json(data: dict) -> Similarity | None:
    if data["status"] == SequenceStatus.FAILED.value:
        return None
    return Similarity(float(data["scale"]), np.array(data["R"], float), np.array(data["t"], float))


_Fit = TypeVar("_Fit", "PoseFit", "PointFit")


def _fit_json(fit: PoseFit | PointFit, head: dict, results: dict) -> dict:
    """A fit's JSON: its status and `head`, then the reason when it failed, else the similarity and
    `results`."""
    out = {"status": _status(fit.similarity)} | head
    if fit.similarity is None:
        return out | {"reason": fit.reason}
    return out | _similarity_json(fit.similarity) | results


def _fit_from_json(cls: type[_Fit], data: dict) -> _Fit:
    """A fit read back from its `to_json`: its required fields by name, the similarity from the
    status and the rest, optional, by name (None when absent)."""
    values = {}
    for f in fields(cls):
        if f.name == "similarity":
            values[f.name] = _similarity_from_json(data)
        else:
            values[f.name] = data[f.name] if f.default is MISSING else data.get(f.name)
    return cls(**values)


@dataclass
class PoseFit:
    """A sequence's similarity fitted on its absolutely posed images (`sim3.fit_to_poses`), or why not."""

    located_images: int  # images of its model registered by absolute pose
    similarity: Similarity | None = None  # None: failed
    reason: str | None = None
    inliers: int | None = None  # images that agree with the fit
    residual_median: float | None = None  # camera centres, world units
    residual_rmse: float | None = None
    rotation_residual_median_deg: float | None = None

    def to_json(self) -> dict:
        return _fit_json(
            self,
            {"method": PoseMethod.ABSOLUTE_POSE.value, "located_images": self.located_images},
            {
                "inliers": self.inliers,
                "residual_median": self.residual_median,
                "residual_rmse": self.residual_rmse,
                "rotation_residual_median_deg": self.rotation_residual_median_deg,
            },
        )

    @classmethod
    def from_json(cls, data: dict) -> PoseFit:
        return _fit_from_json(cls, data)


@dataclass
class PointFit:
    """A sequence's similarity by RANSAC on 3D-3D matches (checked against position priors), or why not."""

    correspondences: int
    prior_check: bool  # hypotheses were checked against position priors
    similarity: Similarity | None = None  # None: failed
    reason: str | None = None
    inliers: int | None = None  # set once RANSAC found a model
    inlier_ratio: float | None = None
    inlier_threshold: float | None = None  # world units
    residual_median: float | None = None  # inliers, world units
    residual_rmse: float | None = None

    def to_json(self) -> dict:
        head = {"correspondences": self.correspondences, "prior_check": self.prior_check}
        if self.inliers is not None:
            head |= {
                "inliers": self.inliers,
                "inlier_ratio": self.inlier_ratio,
                "inlier_threshold": self.inlier_threshold,
            }
        return _fit_json(
            self, head, {"residual_median": self.residual_median, "residual_rmse": self.residual_rmse}
        )

    @classmethod
    def from_json(cls, data: dict) -> PointFit:
        return _fit_from_json(cls, data)


@dataclass
class SequenceResult:
    """What the registration did with one sequence (module doc).

    World sequences have no fit; an aligned or failed one has the pose fit and, when that failed,
    the 3D-3D fit that decided; a sequence without a model only its `reason`.
    """

    status: SequenceStatus
    pose_fit: PoseFit | None = None
    point_fit: PointFit | None = None
    reason: str | None = None  # failed without a model: why there is none
    first_attempt: SequenceResult | None = None  # aligned only after its images were registered one by one
    model: ModelStatus | None = None  # its own model (reconstruction)
    refine_centre_shift_median: float | None = None  # world units
    refine_rotation_shift_median_deg: float | None = None
    final_model: ModelStatus | None = None  # its registered model, triangulated with the final poses
    folder: str | None = None  # the registered model's folder name (`paths.sequence_folder`)
    registered_images: int | None = None

    @property
    def similarity(self) -> Similarity | None:
        """Own frame -> world (identity for the world's sequences), None when failed."""
        if self.status is SequenceStatus.WORLD:
            return Similarity.identity()
        fit = self.point_fit or self.pose_fit
        return None if fit is None else fit.similarity

    @property
    def failure(self) -> str | None:
        """Why the sequence is not in the world frame (None unless failed)."""
        if self.status is not SequenceStatus.FAILED:
            return None
        return self.point_fit.reason if self.point_fit is not None else self.reason

    def to_json(self) -> dict:
        if self.status is SequenceStatus.WORLD:
            out = {"status": self.status.value} | _similarity_json(Similarity.identity())
        elif self.point_fit is not None:
            out = self.point_fit.to_json() | {
                "absolute_pose": self.pose_fit.to_json(),
                "located_images": self.pose_fit.located_images,
            }
        elif self.pose_fit is not None:
            out = self.pose_fit.to_json()
            if self.first_attempt is not None:
                out["first_attempt"] = self.first_attempt.to_json()
        else:
            out = {"status": self.status.value, "reason": self.reason}
        if self.model is not None:
            out["model"] = self.model.to_json()
        if self.refine_centre_shift_median is not None:
            out["refine_centre_shift_median"] = self.refine_centre_shift_median
            out["refine_rotation_shift_median_deg"] = self.refine_rotation_shift_median_deg
        if self.final_model is not None:
            out["final_model"] = self.final_model.to_json()
        if self.folder is not None:
            out |= {"folder": self.folder, "registered_images": self.registered_images}
        return out

    @classmethod
    def from_json(cls, data: dict) -> SequenceResult:
        status = SequenceStatus(data["status"])
        pose_fit = point_fit = first_attempt = None
        if "correspondences" in data:
            point_fit, pose_fit = PointFit.from_json(data), PoseFit.from_json(data["absolute_pose"])
        elif data.get("method") == PoseMethod.ABSOLUTE_POSE.value:
            pose_fit = PoseFit.from_json(data)
            if "first_attempt" in data:
                first_attempt = cls.from_json(data["first_attempt"])
        own, final = data.get("model"), data.get("final_model")
        return cls(
            status,
            pose_fit,
            point_fit,
            data.get("reason") if pose_fit is None else None,
            first_attempt,
            None if own is None else ModelStatus.from_json(own),
            data.get("refine_centre_shift_median"),
            data.get("refine_rotation_shift_median_deg"),
            None if final is None else ModelStatus.from_json(final),
            data.get("folder"),
            data.get("registered_images"),
        )


@dataclass
class ImageResult:
    """How one image got its world pose, or why it has none."""

    sequence: str
    method: PoseMethod | None = None  # None: not registered
    reason: str | None = None  # why not registered; registered on a retry: how, and why it needed one
    pnp_inliers: int | None = None  # registered on its own: absolute-pose inliers ...
    pnp_matches: int | None = None  # ... of this many 2D-3D matches
    confidence: float | None = None  # share of its verified matches its final pose fits (checks.py)

    @property
    def registered(self) -> bool:
        return self.method is not None

    def to_json(self) -> dict:
        out = {
            "sequence": self.sequence,
            "registered": self.registered,
            "method": None if self.method is None else self.method.value,
            "reason": self.reason,
        }
        if self.pnp_inliers is not None:
            out |= {"pnp_inliers": self.pnp_inliers, "pnp_matches": self.pnp_matches}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        return out

    @classmethod
    def from_json(cls, data: dict) -> ImageResult:
        method = None if data["method"] is None else PoseMethod(data["method"])
        return cls(
            data["sequence"],
            method,
            data["reason"],
            data.get("pnp_inliers"),
            data.get("pnp_matches"),
            data.get("confidence"),
        )


@dataclass
class Registration:
    """What `register` did: per sequence its transform and quality, per image its status, and the
    registered models (sequence -> model in the world frame; not compared, not in the JSON)."""

    manifest: str  # checksum of the manifest registered
    world: list[str]  # sequences that define the world frame
    sequences: dict[str, SequenceResult]
    images: dict[str, ImageResult]  # manifest image -> result
    models: dict[str, pycolmap.Reconstruction] = field(default_factory=dict, repr=False, compare=False)
    joint: pycolmap.Reconstruction | None = field(default=None, repr=False, compare=False)  # every sequence

    def rate(self, condition_of: dict[str, str] | None = None) -> dict[str, float]:
        """Fraction of registered images, per sequence (or per condition with `condition_of`)."""
        groups: dict[str, list[bool]] = {}
        for info in self.images.values():
            key = condition_of[info.sequence] if condition_of else info.sequence
            groups.setdefault(key, []).append(info.registered)
        return {k: float(np.mean(v)) for k, v in groups.items()}

    def to_json(self) -> dict:
        return {
            "manifest": self.manifest,
            "world": self.world,
            "sequences": {seq: result.to_json() for seq, result in self.sequences.items()},
            "images": {name: result.to_json() for name, result in self.images.items()},
        } | ({"joint": True} if self.joint is not None else {})  # its model: BuildPaths.joint

    @classmethod
    def from_json(cls, data: dict) -> Registration:
        return cls(
            data["manifest"],
            data["world"],
            {seq: SequenceResult.from_json(v) for seq, v in data["sequences"].items()},
            {name: ImageResult.from_json(v) for name, v in data["images"].items()},
        )
