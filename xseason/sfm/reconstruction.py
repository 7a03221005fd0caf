"""Per-sequence SfM with pycolmap: triangulation from known poses, incremental mapping, or a given model.

`reconstruct` matches the candidate pairs (`pairs.candidate_pairs`) into the build's database,
then makes one model per sequence, cached under `BuildPaths.sequence_model` with a
`status.json`, so that a rerun loads what is there. Posed sequences are triangulated with
their poses fixed (already in the world frame); unposed ones are mapped incrementally (their
own frame; `registration.register` brings them into the world frame).

The sequences' models are made by tasks on an executor (`core.executor`: in this process or on Ray),
one per sequence (`_sequence_task`): a task makes (or finds, with its cache key) its sequence's folder,
written atomically, and returns its status; the driver reads the models back from the folders (as it
would after a resumed build: the same input to the registration whatever ran the tasks). The tasks only
read the database, which the matching before them has written (`features.match`: tasks too on Ray, the
driver writing). In a Ray task COLMAP's `num_threads` -1 is the CPUs Ray gave the task, not all the
node's (`features.colmap_threads`); in this process, all cores. On a multi-node Ray
cluster the work folder (database and models) must therefore be on a filesystem every node sees, at the
same absolute path (a local Ray instance shares this machine's). A sequence that cannot be reconstructed
is a status with its reason, never an error of the build.

A sequence named in `reconstruction.sfm_from` takes that COLMAP model instead (`_imported`; its status
says `source`): its images found by name (every image of the sequence must be posed there), image and
camera ids renumbered to the database's (every model of a build shares them: `posed_model`), its
cameras, poses, 3D points and their observations kept; its points2D are its images' first keypoints
in the database (features.py), so point2D indices stay valid. A posed sequence's model must agree
with the manifest's poses (centres within `sfm_from_max_pose_error` x the scene's size, rotations
within as many radians) or the build stops; an unposed one is in its own frame and is registered like
a mapped model. Its images are still SIFT-matched, within the sequence and with the others: those
matches register the other sequences against it, and the registration triangulates every sequence's
final points (and the joint tracks) from the verified matches at the final poses, as for a mapped
model, whose own tracks are likewise not the final ones. The model's points2D that no SIFT keypoint
lends a descriptor to are therefore in the sequence's model (registration's 3D-3D alignment) but not
in the final points.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pycolmap

from xseason.core.colmap import (
    image_points2D,
    is_colmap_model,
    pose_arrays,
    quiet_logs,
    renumbered_model,
    rigid_from_pose,
)
from xseason.core.errors import XSeasonError
from xseason.core.executor import Executor, LocalExecutor
from xseason.core.files import atomic_path, write_json
from xseason.core.log import progress
from xseason.inputs.manifest import ImageRecord, Manifest
from xseason.sfm.cachekeys import StageKey, stage_keys
from xseason.sfm.config import ReconstructionConfig, SfMConfig
from xseason.sfm.features import (
    FeatureIndex,
    colmap_threads,
    imported_models,
    match,
    read_camera,
    read_keypoints,
    when_unlocked,
)
from xseason.sfm.pairs import candidate_pairs
from xseason.sfm.paths import BuildPaths

log = logging.getLogger(__name__)


class SequenceModelError(XSeasonError):
    """A sequence's given model (`reconstruction.sfm_from`) cannot be used as it is."""


@dataclass
class ModelStatus:
    """How a model was made (its size and mean reprojection error), or why it was not.

    A sequence's own model also names its sequence and whether it was posed (its `status.json`);
    `other_models`: the sizes of the smaller models incremental mapping found besides it; `source`: the
    folder of a model imported through `reconstruction.sfm_from` (None: made here).
    """

    sequence: str | None = None
    posed: bool | None = None
    ok: bool = False
    reason: str | None = None
    points: int | None = None
    images: int | None = None
    mean_reproj_error: float | None = None
    other_models: list[int] | None = None
    source: str | None = None

    @classmethod
    def made(cls, model: pycolmap.Reconstruction, other_models: list[int] | None = None) -> ModelStatus:
        return cls(
            ok=True,
            points=model.num_points3D(),
            images=model.num_reg_images(),
            mean_reproj_error=model.compute_mean_reprojection_error(),
            other_models=other_models,
        )

    @classmethod
    def failed(cls, reason: str) -> ModelStatus:
        return cls(ok=False, reason=reason)

    def to_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> ModelStatus:
        return cls(**data)


# a model (None when it could not be made) and how it was made
MadeModel = tuple[pycolmap.Reconstruction | None, ModelStatus]


@dataclass
class SequenceModels:
    """What `reconstruct` made: every sequence's status (manifest order) and the models made."""

    status: dict[str, ModelStatus]
    models: dict[str, pycolmap.Reconstruction]


def reconstruct(
    manifest: Manifest,
    index: FeatureIndex,
    paths: BuildPaths,
    cfg: SfMConfig,
    executor: Executor | None = None,
) -> SequenceModels:
    """Matching within and across sequences, then one model per sequence (unposed ones in their own
    frame), made by tasks on `executor` (default: this process; module doc)."""
    quiet_logs()
    poses = {r.image: r.pose for r in manifest.images if r.pose is not None}
    sequence_of = {r.image: r.sequence for r in manifest.images}
    pairs = candidate_pairs(manifest, index, cfg.matching)
    match(index, pairs, paths.pair_list("sequences"), cfg.matching, poses, sequence_of, executor)
    status: dict[str, ModelStatus] = {}
    models: dict[str, pycolmap.Reconstruction] = {}
    executor = executor or LocalExecutor()
    key = stage_keys(manifest, cfg).reconstruction
    job = _SequenceJob(manifest, index, paths, cfg.reconstruction, key, on_ray=executor.kind == "ray")
    sequences = manifest.sequences()
    made = zip(sequences, executor.map(_sequence_task, list(sequences.items()), job))
    for seq, done in progress(made, total=len(sequences), desc="reconstruction", unit="seq", leave=False):
        status[seq] = done
        model = read_sequence_model(paths, seq, done)
        if model is not None:
            models[seq] = model
    return SequenceModels(status, models)


@dataclass(frozen=True)
class _SequenceJob:
    """What every sequence task reads (`_sequence_task`), shipped once to each worker."""

    manifest: Manifest
    index: FeatureIndex
    paths: BuildPaths
    cfg: ReconstructionConfig
    key: StageKey
    on_ray: bool = False  # COLMAP's threads: `num_threads` -1 is then the task's CPUs, not the node's


def _sequence_task(item: tuple[str, list[ImageRecord]], job: _SequenceJob) -> ModelStatus:
    """A sequence task (module doc): the status of the sequence's model folder, made now if need be."""
    quiet_logs()
    seq, recs = item
    cfg = replace(job.cfg, num_threads=colmap_threads(job.cfg.num_threads)) if job.on_ray else job.cfg
    return make_sequence_model(job.manifest, job.index, seq, recs, job.paths, cfg, job.key)


def read_sequence_model(paths: BuildPaths, seq: str, status: ModelStatus) -> pycolmap.Reconstruction | None:
    """The model of a sequence whose folder is made, with its `status` (None, said, when it failed).

    Read back from the folder, also just after making it, so that a resumed build gets exactly the
    same input (a model read from disk iterates its images in another order than the mapper's, and
    the registration's result depends on that order).
    """
    if not status.ok:
        log.warning("sequence %s: no model: %s", seq, status.reason)
        return None
    return pycolmap.Reconstruction(paths.sequence_model(seq))


def make_sequence_model(
    manifest: Manifest,
    index: FeatureIndex,
    seq: str,
    recs: list[ImageRecord],
    paths: BuildPaths,
    cfg: ReconstructionConfig,
    key: StageKey,
) -> ModelStatus:
    """The status of one sequence's cached model folder (`BuildPaths.sequence_model`), the model made
    now (written atomically, with its status.json) if missing or made with another cache `key`."""
    folder = paths.sequence_model(seq)
    status_path = folder / "status.json"
    if status_path.exists():
        record = json.loads(status_path.read_text())
        stale = key.reason(record.pop("key", None))
        if stale is None:
            log.info("sequence %s: model reused from %s", seq, folder)
            return ModelStatus.from_json(record)
        log.info("sequence %s: model made anew: %s", seq, stale)
    posed = manifest.is_posed(seq)
    with atomic_path(folder, "folder", replace_only_if=_is_sequence_folder, what="a model") as tmp:
        tmp.mkdir()
        if seq in cfg.sfm_from:
            model, made = _imported(manifest, index, seq, recs, cfg)
        elif posed:
            model, made = _triangulate(manifest, index, recs, tmp, cfg)
        else:
            given = all(r.camera_params is not None for r in recs)
            model, made = _map(manifest, index, index.names(recs), tmp, cfg, refine=not given)
        if model is not None:
            model.write_binary(tmp)
        status = replace(made, sequence=seq, posed=posed)
        write_json(tmp / "status.json", {**status.to_json(), "key": key.to_json()})
    return status


def _is_sequence_folder(folder: Path) -> bool:
    """True for what `make_sequence_model` writes: a model with its status.json, or the status.json alone
    of a sequence that failed."""
    only_status = {e.name for e in folder.iterdir()} == {"status.json"}
    return only_status or is_colmap_model(folder, also={"status.json"})


def _imported(
    manifest: Manifest, index: FeatureIndex, seq: str, recs: list[ImageRecord], cfg: ReconstructionConfig
) -> MadeModel:
    """The sequence's own model (`cfg.sfm_from`) with the database's ids and keypoints (module doc)."""
    folder = Path(cfg.sfm_from[seq])
    model = imported_models(manifest, replace(cfg, sfm_from={seq: folder}))[seq]
    names = index.names(recs)
    if not names:
        return None, ModelStatus.failed("no readable image")
    own = image_points2D(model)
    keypoints = {}
    for name in names:
        stored, n = read_keypoints(index, index.image_ids[name]), len(own[name])
        if len(stored) < n or np.abs(stored[:n] - own[name]).max(initial=0.0) > 1e-3:
            raise SequenceModelError(
                f"{index.db_path}: the keypoints of {name} do not start with the points2D of {folder}: the "
                "database was made for another model; use a fresh build folder"
            )
        keypoints[name] = np.concatenate([own[name], stored[n:]])
    camera_of = {r.image: index.camera_ids[r.camera] for r in recs}
    _check_cameras(model, folder, {name: camera_of[name] for name in names}, index)
    out = renumbered_model(
        model, {name: (index.image_ids[name], camera_of[name]) for name in names}, keypoints
    )
    if manifest.is_posed(seq):
        _check_poses(
            out, {r.image: r for r in recs}, f"sfm_from.{seq}: {folder}", cfg.sfm_from_max_pose_error
        )
    log.info(
        "sequence %s: model imported from %s (%d images, %d points; no triangulation or mapping)",
        seq,
        folder,
        out.num_reg_images(),
        out.num_points3D(),
    )
    return out, replace(ModelStatus.made(out), source=str(folder))


def _check_cameras(
    model: pycolmap.Reconstruction, folder: Path, camera_of: dict[str, int], index: FeatureIndex
) -> None:
    """The model's cameras must have their images' sizes in the database, and images that share a database
    camera must share one camera in the model (same model and parameters)."""
    by_name = {image.name: image for image in model.images.values()}
    seen: dict[int, tuple[str, pycolmap.Camera]] = {}
    for name, camera_id in camera_of.items():
        camera = model.camera(by_name[name].camera_id)
        stored = read_camera(index, camera_id)
        if (camera.width, camera.height) != (stored.width, stored.height):
            raise SequenceModelError(
                f"{folder}: the camera of {name} is {camera.width}x{camera.height}, the image is "
                f"{stored.width}x{stored.height}"
            )
        first = seen.setdefault(camera_id, (name, camera))
        if (first[1].model, list(first[1].params)) != (camera.model, list(camera.params)):
            raise SequenceModelError(
                f"{folder}: {first[0]} and {name} have one camera in the manifest but two in the model "
                f"({first[1].model.name} {list(first[1].params)} / {camera.model.name} {list(camera.params)})"
            )


def _check_poses(
    model: pycolmap.Reconstruction, records: dict[str, ImageRecord], given: str, tolerance: float
) -> None:
    """A posed sequence's given model must hold the manifest's poses: camera centres within `tolerance` x
    the scene's size (twice the median distance of its points and centres to their median), rotations
    within `tolerance` radians; else the build stops, naming the worst image (`given`: which model)."""
    images = list(model.images.values())
    r_model, c_model = pose_arrays(im.cam_from_world() for im in images)
    r_given, c_given = pose_arrays(rigid_from_pose(records[im.name].pose) for im in images)
    xyz = np.concatenate([np.array([p.xyz for p in model.points3D.values()]).reshape(-1, 3), c_given])
    scene = 2 * float(np.median(np.linalg.norm(xyz - np.median(xyz, 0), axis=1))) or 1.0
    centre = np.linalg.norm(c_model - c_given, axis=1) / scene
    cos = (np.einsum("nij,nij->n", r_model, r_given) - 1) / 2
    angle = np.arccos(np.clip(cos, -1, 1))
    bad = np.flatnonzero((centre > tolerance) | (angle > tolerance))
    if len(bad):
        worst = bad[np.argmax(np.maximum(centre, angle)[bad])]
        raise SequenceModelError(
            f"reconstruction.{given}: its poses disagree with the manifest's for {len(bad)} of "
            f"{len(images)} images, e.g. {images[worst].name}: centre {centre[worst] * scene:.4g} off "
            f"({centre[worst]:.2%} of the scene's size {scene:.4g}), rotation {np.degrees(angle[worst]):.3g} "
            f"deg (reconstruction.sfm_from_max_pose_error {tolerance}); a posed sequence's model must be "
            "in the manifest's world frame (or leave the sequence's poses out of the manifest)"
        )


def _triangulate(
    manifest: Manifest, index: FeatureIndex, recs: list[ImageRecord], tmp: Path, cfg: ReconstructionConfig
) -> MadeModel:
    """Points from the manifest's fixed poses."""
    poses = {r.image: rigid_from_pose(r.pose) for r in recs if r.image in index.image_ids}
    model = posed_model(index, poses, {r.image: r.camera for r in recs})
    return triangulate_fixed(manifest, index, model, tmp, cfg)


def posed_model(
    index: FeatureIndex,
    poses: dict[str, pycolmap.Rigid3d],
    camera_of: dict[str, str],
    cameras: dict[int, pycolmap.Camera] | None = None,
) -> pycolmap.Reconstruction:
    """A model without points holding `poses` (manifest image -> cam_from_world), ids equal to the database's.

    `camera_of`: manifest image -> manifest camera id; `cameras`: database camera id -> camera to use
    instead of the database's (e.g. intrinsics refined by a sequence's own model).
    """
    cam_ids = {index.camera_ids[camera_of[name]] for name in poses}
    model = _empty_model(index, cam_ids, cameras)
    for name, pose in poses.items():
        camera_id = index.camera_ids[camera_of[name]]
        image = pycolmap.Image(name=name, camera_id=camera_id, image_id=index.image_ids[name])
        model.add_image_with_trivial_frame(image, pose)
    return model


def triangulate_fixed(
    manifest: Manifest,
    index: FeatureIndex,
    model: pycolmap.Reconstruction,
    tmp: Path,
    cfg: ReconstructionConfig,
) -> MadeModel:
    """Triangulate the database's verified matches between the images of `model`, poses and intrinsics fixed.

    Avoids the usual "0 points" causes: image / camera ids equal to the database's, a low
    `min_tri_angle`, two-view tracks kept (config), unreadable images left out beforehand.
    """
    if model.num_reg_images() < 2:
        return None, ModelStatus.failed(f"{model.num_reg_images()} posed image(s): nothing to triangulate")
    db, options = index.db_path, cfg.pipeline_options()
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        made = when_unlocked(
            lambda: pycolmap.triangulate_points(model, db, manifest.root, out, True, options, False)
        )
    if made.num_points3D() == 0:
        return None, ModelStatus.failed("0 points triangulated (no verified matches with enough parallax)")
    return made, ModelStatus.made(made)


def _map(
    manifest: Manifest,
    index: FeatureIndex,
    names: list[str],
    tmp: Path,
    cfg: ReconstructionConfig,
    refine: bool,
) -> MadeModel:
    """Incremental mapping of one sequence; keep the largest model, report the others.

    A largest model under `min_model_size` images fails the sequence (COLMAP keeps its first model
    whatever its size, e.g. two images joined by matches on the ego-vehicle).
    """
    if len(names) < 2:
        return None, ModelStatus.failed(f"{len(names)} readable image(s): nothing to map")
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        options = cfg.pipeline_options(names, refine)
        found = when_unlocked(
            lambda: pycolmap.incremental_mapping(index.db_path, manifest.root, out, options)
        )
    models = sorted(found.values(), key=lambda m: m.num_reg_images(), reverse=True)
    if not models:
        return None, ModelStatus.failed("incremental mapping found no initial pair / model")
    sizes = [m.num_reg_images() for m in models]
    if sizes[0] < cfg.min_model_size:
        return None, ModelStatus.failed(
            f"incremental mapping found only models of {sizes} images (< min_model_size {cfg.min_model_size})"
        )
    return models[0], ModelStatus.made(models[0], other_models=sizes[1:])


def _empty_model(
    index: FeatureIndex, camera_ids: set[int], cameras: dict[int, pycolmap.Camera] | None = None
) -> pycolmap.Reconstruction:
    """A model holding cameras `camera_ids` (from `cameras`, else the database), one trivial rig each."""
    model = pycolmap.Reconstruction()
    for camera_id in sorted(camera_ids):
        model.add_camera_with_trivial_rig((cameras or {}).get(camera_id) or read_camera(index, camera_id))
    return model
