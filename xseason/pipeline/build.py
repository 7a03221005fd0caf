"""`xseason build`: manifest -> reconstruction -> registration -> association ->
correspondences -> dataset, stage by stage, resumable.

Intermediate work lives in a work folder beside the dataset (`<out>.work/` unless given; its
layout: `xseason.sfm.paths.BuildPaths`): the COLMAP database, the per-sequence and registered
models, registration.json and the build's log. The stages pass their results on in memory; the
files are caches: each SfM stage reuses what a previous run finished there when its cache key
(`xseason.sfm.cachekeys`: the inputs, config sections and code it was made from) is the same,
and the summary says which stages were reused and why the others were made anew. The dataset
itself is written to a temporary folder and renamed into place only when complete, so a
crash never leaves a dataset that looks whole; a complete dataset built from the same
manifest, image files, config and code is not rebuilt.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
from contextlib import closing
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from xseason.core.config import load_config, to_dict
from xseason.core.errors import ConfigError, OutputError
from xseason.core.executor import EXECUTORS, make_executor
from xseason.core.files import check_outside, exclusive_lock, write_json
from xseason.core.log import log_file, stage
from xseason.inputs.images import check_free_space, check_writable, estimate_build_bytes, preflight_images
from xseason.inputs.manifest import Manifest, read_manifest
from xseason.matching.association import AssociationConfig, associate_clouds, point_table_from_reconstructions
from xseason.matching.correspondences import (
    SHARD_TARGETS,
    CorrespondenceConfig,
    CorrespondenceTables,
    make_correspondences,
)
from xseason.matching.splits import check_disjoint
from xseason.matching.surfaces import SurfaceConfig
from xseason.matching.surfels import SurfelConfig
from xseason.matching.views import views_from_manifest
from xseason.pipeline.dropped import (
    ALLOW,
    Dropped,
    Failure,
    PartialBuildError,
    accept,
    dropped_of,
    lost_conditions,
    no_cross_pair,
    no_points,
    one_condition,
)
from xseason.sfm.cachekeys import cache_report, code_digest, stage_keys
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import extract
from xseason.sfm.paths import BuildPaths
from xseason.sfm.reconstruction import reconstruct
from xseason.sfm.registration import register
from xseason.store import StoreConfig, check_dataset_output, write_dataset
from xseason.store.remote import RemoteDataset, is_uri
from xseason.store.tables import images_table

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path("data_manifest.csv")
DEFAULT_SCENE = Path("data/demo")
SHARDS_FOLDER = "correspondences"  # <work>/correspondences/<key>/shard-NNNNN.parquet (make_correspondences)


def ensure_default_scene(manifest: Path = DEFAULT_MANIFEST, scene: Path = DEFAULT_SCENE) -> None:
    """Render the built-in `demo` scene into `scene`, and its manifest at `manifest`, when the scene is
    not there yet and `manifest` is missing or is the built-in demo's own manifest (the repository's
    data_manifest.csv). A user's own manifest is never rewritten (issue 16): nothing is rendered, and
    images it names that are missing are the build's usual manifest error."""
    if (scene / "manifest.csv").is_file():
        return
    if os.path.lexists(manifest) and not _is_demo_manifest(manifest, scene):
        log.info("%s is not the built-in demo's manifest: the demo scene is not rendered", manifest)
        return
    from xseason.synth import render_scene, synth_config

    log.info("rendering the built-in demo scene into %s/ (once) ...", scene)
    render_scene(scene, synth_config("demo"), root_manifest=manifest)


def _is_demo_manifest(manifest: Path, scene: Path) -> bool:
    """True when `manifest` holds what `render_scene(scene, "demo", root_manifest=manifest)` writes:
    the same rows and columns, cell by cell the same text or the same numbers (to 1e-6, as the last
    printed digit may differ between platforms). A file whose first image is not under `scene` is
    told apart without rendering anything or loading the scene's code; at most one row more than
    the demo's is read."""

    def same(a: str, b: str) -> bool:
        if a == b:
            return True
        try:
            x, y = [float(v) for v in a.split()], [float(v) for v in b.split()]
        except ValueError:
            return False
        return len(x) == len(y) > 0 and all(
            math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-9) for u, v in zip(x, y)
        )

    prefix = Path(os.path.relpath(scene.resolve(), manifest.resolve().parent)).as_posix() + "/"
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            got = list(islice(rows, 2))
            if len(got) < 2 or got[0][:1] != ["image"] or not got[1][:1] or not got[1][0].startswith(prefix):
                return False
            from xseason.synth import make_views, synth_config, write_manifest

            cfg = synth_config("demo")
            with tempfile.TemporaryDirectory() as tmp:
                demo = write_manifest(Path(tmp) / "manifest.csv", make_views(cfg), cfg, prefix=prefix)
                want = list(csv.reader(demo.read_text(encoding="utf-8").splitlines()))
            got += islice(rows, len(want) - 1)  # one row more than the demo's, if there is one
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return len(got) == len(want) and all(len(g) == len(w) and all(map(same, g, w)) for g, w in zip(got, want))


@dataclass
class RunOptions:
    """How the build runs (not what it computes).

    With all cores (the default) a build can differ by a pair or a few matches between runs (seen
    on unposed builds: COLMAP's multi-threaded matching and mapping); `deterministic` runs those
    single-threaded. The stages after the SfM are deterministic either way.

    The correspondence generation runs in shards of `shard_targets` target images, each a task that
    writes one part file of matches/ (`make_correspondences`, `store.write_dataset(parts=...)`), on
    the `executor`: `local` (this process) or `ray` (a Ray cluster, `core.executor.RayExecutor`), with
    the same dataset content either way; shards finished by an interrupted run are reused. The feature
    extraction (blocks of images), the matching (blocks of pairs; the driver writes the database) and
    the sequences' own models (one task per sequence) run on the same executor (`sfm.features.extract`,
    `sfm.features.match`, `sfm.reconstruction.reconstruct`)."""

    deterministic: bool = False  # one thread for matching and mapping: identical results run to run
    executor: str = "local"  # local: every task in this process; ray: on Ray (pip install 'xseason[ray]')
    ray_address: str | None = None  # ray: null starts a local instance; "auto" or HOST:PORT: a cluster
    workers: int | None = None  # ray: CPUs of the local instance (null: all); with ray_address, tasks at once
    shard_targets: int = SHARD_TARGETS  # target images per generation task (one part file of matches/ each)

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor != "ray" and (self.ray_address is not None or self.workers is not None):
            raise ValueError("ray_address and workers are settings of executor: ray (the executor is local)")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 (or null: all cores), got {self.workers}")
        if self.shard_targets < 1:
            raise ValueError(f"shard_targets must be >= 1, got {self.shard_targets}")


@dataclass
class BuildConfig(SfMConfig):
    """Every knob of the build, one section per stage (configs/build.yaml documents them): the SfM
    stages' sections (`SfMConfig`), then the later stages'."""

    association: AssociationConfig = field(default_factory=AssociationConfig)
    correspondences: CorrespondenceConfig = field(default_factory=CorrespondenceConfig)
    surfaces: SurfaceConfig = field(default_factory=SurfaceConfig)
    surfels: SurfelConfig = field(default_factory=SurfelConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    build: RunOptions = field(default_factory=RunOptions)


@dataclass
class BuildSummary:
    """What a build produced: per condition the registration rate, per condition pair the counts, and
    what it dropped with the causes (`losses.Dropped`)."""

    dataset: Path | str  # a folder, or the URI it was uploaded to
    work_dir: Path
    references: list[str]
    registered: pd.DataFrame  # condition, images, registered, rate
    pairs: pd.DataFrame  # reference, condition, pairs, matches, densified_share
    reused: bool = False
    dropped: Dropped = field(default_factory=Dropped)
    stages: dict[str, str] = field(default_factory=dict)  # SfM stage -> reused / made and why (cachekeys)

    def format(self) -> str:
        lines = [
            f"dataset: {self.dataset}" + ("  (already complete: reused)" if self.reused else ""),
            f"work folder: {self.work_dir}",
            f"reference condition(s): {', '.join(self.references)}",
            *(f"{stage}: {verdict}" for stage, verdict in self.stages.items()),
            "",
            "images registered per condition:",
            self.registered.to_string(index=False),
            "",
            "pairs and matches per condition pair:",
            self.pairs.to_string(index=False) if len(self.pairs) else "  (no pairs)",
            "",
            *self.dropped.format(),
        ]
        return "\n".join(lines)


def load_build_config(path: str | Path | None = None, overrides: list[str] | None = None) -> BuildConfig:
    """The build config from a YAML file (default: all defaults) and `section.key=value` overrides."""
    return load_config(BuildConfig, path, overrides)


def run_build(
    manifest: str | Path | Manifest,
    out: str | Path,
    config: BuildConfig | None = None,
    references: list[str] | None = None,
    work_dir: str | Path | None = None,
    image_root: str | Path | None = None,
    progress: bool = True,
    allow_partial: bool = False,
) -> BuildSummary:
    """Build the correspondence dataset at `out` from `manifest` (resumable; see module doc).

    `out` may be a filesystem URI (``s3://bucket/ds``; `store.remote`): the dataset is built in
    `<work>/dataset` (work default: `./<name>.work`) and uploaded once complete, dataset.json last.

    Before any work the outputs are checked (`check_outputs`); the build then holds an exclusive
    lock on the dataset (`.<out>.lock` beside it) and on the work folder (`<work>/build.lock`), so
    that a second build into either fails at once with a `LockError` naming this process.

    Every image, sequence and condition dropped is listed with its cause in the summary and in
    dataset.json (`pipeline.dropped`). An incomplete result -- a manifest of one condition (found
    before any work), a condition that lost all its images, no cross-condition pair -- raises a
    `PartialBuildError` naming the stage and the causes, and no dataset is written, unless
    `allow_partial` (`--allow-partial`) accepts it."""
    cfg = config or BuildConfig()
    if cfg.build.deterministic:
        cfg = replace(
            cfg,
            matching=replace(cfg.matching, num_threads=1),
            reconstruction=replace(cfg.reconstruction, num_threads=1),
        )
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, image_root=image_root)
    if is_uri(out):  # built in <work>/dataset, then uploaded (`store.remote`)
        remote = RemoteDataset.at(str(out))
        remote.check_output()
        paths = BuildPaths(work_dir if work_dir is not None else Path.cwd() / f"{remote.name}.work")
        summary = run_build(
            manifest, paths.root / "dataset", cfg, references, paths.root, None, progress, allow_partial
        )
        with stage("upload"):
            remote.publish(summary.dataset)
        return replace(summary, dataset=remote.uri)
    out = Path(out)
    if out.name in ("", ".."):  # "." or "a/..": name the folder itself (its lock and work go beside it)
        out = Path(os.path.abspath(out))
    paths = BuildPaths(work_dir) if work_dir is not None else BuildPaths.beside(out)
    refs = _references(manifest, references, every=cfg.correspondences.pair_conditions == "all")
    preflight = Dropped()
    accept(
        [one_condition(manifest)],
        preflight,
        allow_partial,
        tail=f"Nothing was done; pass {ALLOW} to build it anyway (a dataset without pairs)",
    )
    check_outputs(manifest, out, paths)
    check_writable(out.parent)
    check_writable(paths.root)
    with exclusive_lock(dataset_lock(out), f"the dataset {out}"):
        return _build(manifest, out, paths, cfg, refs, progress, allow_partial, preflight.accepted)


def dataset_lock(out: Path) -> Path:
    """The lock file a build of the dataset `out` holds: `.<name>.lock` beside the dataset folder."""
    return out.parent / f".{out.name}.lock"


def check_outputs(manifest: Manifest, out: Path, paths: BuildPaths) -> None:
    """Refuse (`OutputError`), before any work, outputs that could lose the user's files: a dataset
    folder that is neither new, empty nor a dataset; a dataset or work folder that is, or holds,
    the image root, the manifest or an input image, mask or label; a dataset folder holding the work
    folder; a work folder that is a file."""
    inputs = [manifest.root, manifest.path]
    inputs += [p for r in manifest.images for p in (r.path, r.mask, r.label) if p is not None]
    what = "the image root, the manifest, or an input image, mask or label"
    check_outside(out, inputs, what, "the dataset folder")
    check_outside(paths.root, inputs, what, "the work folder")
    check_outside(out, [paths.root], "the build's work folder", "the dataset folder")
    check_dataset_output(out)
    if paths.root.exists() and not paths.root.is_dir():
        raise OutputError(f"{paths.root}: is a file; the work folder must be a folder")


def _build(
    manifest: Manifest,
    out: Path,
    paths: BuildPaths,
    cfg: BuildConfig,
    refs: list[str],
    progress: bool,
    allow_partial: bool,
    accepted: list[Failure],
) -> BuildSummary:
    """`run_build` once its outputs are checked, holding the dataset's lock; `accepted`: the failures
    found before any work that `allow_partial` accepted."""
    work = paths.root
    config_dict = to_dict(cfg)
    keys = stage_keys(manifest, cfg, refs)
    sfm_key = keys.registration.digest + _later_stages_code()
    stale = _rebuild_reason(out, manifest.checksum, config_dict, refs, sfm_key)
    if stale is None:
        log.info(
            "%s is complete and was built from this manifest (sha256 %s...), config and "
            "reference(s) %s: reused",
            out,
            manifest.checksum[:12],
            ", ".join(refs),
        )
        summary = _summary(out, work, refs, reused=True)
        if summary.dropped.accepted and not allow_partial:  # the same answer as when it was built
            raise PartialBuildError(
                summary.dropped.accepted,
                summary.dropped,
                tail=f"The dataset at {out} was written with {ALLOW} and is left as it is; pass {ALLOW} "
                "to accept it",
            )
        return summary

    resumed = work.is_dir() and any(p != paths.lock for p in work.iterdir())
    work.mkdir(parents=True, exist_ok=True)
    run = cfg.build
    with (
        exclusive_lock(paths.lock, f"the work folder {work}"),
        log_file(paths.log),
        stage("build"),
        closing(make_executor(run.executor, run.ray_address, run.workers)) as executor,
    ):
        log.info(
            "building %s (%s) from %s: %d images, conditions %s, reference(s) %s",
            out,
            stale,
            manifest.path,
            len(manifest.images),
            ", ".join(manifest.conditions()),
            ", ".join(refs),
        )
        if resumed:
            log.info("resuming in %s: what an earlier run finished there is reused", work)
        stages = cache_report(manifest, paths, keys)
        for name, verdict in stages.items():
            log.info("%s: %s", name, verdict)
        with stage("features"):
            checks = preflight_images(manifest)
            if checks.problems:
                log.warning("%s\nthese are skipped", checks.message())
            need = estimate_build_bytes(
                [w * h for w, h in checks.sizes.values()], cfg.features.max_num_features
            )
            check_free_space(work, need)
            index = extract(manifest, paths, cfg, skip=checks.problems, executor=executor)
        with stage("reconstruction"):
            models = reconstruct(manifest, index, paths, cfg, executor=executor)
        with stage("registration"):
            registration = register(manifest, index, models, paths, cfg, refs, executor=executor)
            recs = registration.models
            losses = dropped_of(manifest, index, models, registration, cfg)
            losses.accepted += accepted
            _accept(lost_conditions(losses), losses, allow_partial, paths, refs)
        with stage("association"):
            # Checked here, so that sequences that failed are named rather than the association's
            # "no 3D points" (which is left to a real mismatch between the models and the manifest).
            has_points = any(model.num_points3D() for model in recs.values())
            if not has_points:
                _accept([no_points()], losses, allow_partial, paths, refs)
            views = views_from_manifest(manifest, recs, cfg.features.default_focal_factor)
            if has_points:
                points = point_table_from_reconstructions(
                    recs, views, cfg.association.spacing_k, joint=registration.joint
                )
                associated = associate_clouds(points, refs, cfg.association)
        with stage("correspondences"):
            if has_points:
                tables = make_correspondences(
                    associated,
                    cfg.correspondences,
                    cfg.surfaces,
                    cfg.surfels,
                    progress=progress,
                    executor=executor,
                    shard_root=work / SHARDS_FOLDER,
                    shard_targets=run.shard_targets,
                )
            else:
                tables = _no_correspondences()
            confidence = [registration.images[v.name].confidence for v in views]
            images = _with_labels(images_table(views, tables.image_split, confidence), manifest)
            _accept([no_cross_pair(images, tables.pairs)], losses, allow_partial, paths, refs)
        with stage("store"):
            check_disjoint(images, tables.pairs)
            condition_of = {r.sequence: r.condition for r in manifest.images}
            write_dataset(
                out,
                images,
                tables.pairs,
                parts=tables.match_parts(),
                executor=executor,
                config=config_dict,
                manifest_checksum=manifest.checksum,
                image_root=manifest.root,
                points3d=tables.points3d if len(tables.points3d) else None,
                store_config=cfg.store,
                extra_meta={
                    "references": refs,
                    "sfm_key": sfm_key,
                    "manifest": str(manifest.path.resolve()),
                    "work_dir": str(work.resolve()),
                    "registration_rate": registration.rate(condition_of),
                    "matches_by_surface": tables.surface_counts(),
                    "splits": tables.split_counts,
                    "dropped": losses.to_json(),
                },
            )
            shutil.rmtree(work / SHARDS_FOLDER, ignore_errors=True)  # committed: no run needs them again
            summary = _summary(out, work, refs)
            summary.stages = stages
            write_json(
                paths.summary,
                {
                    "dataset": str(out),
                    "references": refs,
                    "registered": summary.registered.to_dict(orient="records"),
                    "pairs": summary.pairs.to_dict(orient="records"),
                    "dropped": losses.to_json(),
                    "stages": stages,
                },
            )
    return summary


def _accept(
    failures: list[Failure | None], losses: Dropped, allow_partial: bool, paths: BuildPaths, refs: list[str]
) -> None:
    """`losses.accept`; a failing build leaves its losses and why it failed in `<work>/build_summary.json`."""
    try:
        accept(failures, losses, allow_partial)
    except PartialBuildError as exc:
        failed = [{"stage": f.stage, "reason": f.reason} for f in exc.failures]
        record = {"dataset": None, "references": refs, "failed": failed, "dropped": losses.to_json()}
        write_json(paths.summary, record)
        raise


def _no_correspondences() -> CorrespondenceTables:
    """The correspondence stage's output when there is nothing to match: no pair, no match, no point."""
    pairs = pd.DataFrame(
        {
            "pair_id": np.zeros(0, np.int64),
            "image_id0": np.zeros(0, np.int32),
            "image_id1": np.zeros(0, np.int32),
            "num_matches": np.zeros(0, np.int32),
            "overlap": np.zeros(0, np.float32),
            "split": np.zeros(0, object),
        }
    )
    return CorrespondenceTables(pairs, pd.DataFrame())


def _references(manifest: Manifest, references: list[str] | None, every: bool = False) -> list[str]:
    """The reference conditions: those given (default: the first row's), then, with `every`
    (`correspondences.pair_conditions: all`), every other condition of the manifest, so that each two
    conditions make pairs (image 0 from the earlier one in this order)."""
    conditions = manifest.conditions()
    refs = list(references) if references else [manifest.images[0].condition]
    if every:
        refs += conditions
    unknown = [r for r in refs if r not in conditions]
    if unknown:
        raise ConfigError(
            f"reference condition {unknown[0]!r} is not in the manifest; its conditions: "
            f"{', '.join(conditions)}"
        )
    return list(dict.fromkeys(refs))


def _with_labels(images: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """Add the optional `label` column (label PNG path relative to the image root) when the manifest
    has labels."""
    labels = {r.image: r.label for r in manifest.images if r.label is not None}
    if not labels:
        return images
    out = images.copy()
    root = os.path.abspath(manifest.root)  # not resolved: a linked labels folder stays under the root
    out["label"] = [
        Path(os.path.relpath(os.path.abspath(labels[name]), root)).as_posix() if name in labels else None
        for name in out["image"]
    ]
    return out


def _later_stages_code() -> str:
    """Code fingerprint of the stages after the SfM (matching, store): a change rebuilds the dataset."""
    import xseason.matching
    import xseason.store

    folders = [Path(xseason.matching.__file__).parent, Path(xseason.store.__file__).parent]
    return code_digest(sorted(p for folder in folders for p in folder.glob("*.py")))


def _rebuild_reason(out: Path, checksum: str, config: dict, refs: list[str], sfm_key: str) -> str | None:
    """Why the dataset at `out` must be built, or None when it is complete and built from the same
    inputs (`sfm_key`: the registration's cache key, which covers the image files and the SfM code,
    and the later stages' code)."""
    meta_path = out / "dataset.json"
    if not meta_path.is_file():
        return "no complete dataset there yet"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return "its dataset.json is unreadable"
    changed = [
        what
        for what, old, new in (
            ("manifest", meta.get("manifest_sha256"), checksum),
            ("config", meta.get("config"), config),
            ("references", meta.get("references"), refs),
            ("image files or code", meta.get("sfm_key"), sfm_key),
        )
        if old != new
    ]
    return f"the dataset there was built from another {', '.join(changed)}" if changed else None


def _summary(out: Path, work: Path, refs: list[str], reused: bool = False) -> BuildSummary:
    from xseason.store import open_dataset

    store = open_dataset(out)
    images = store.images
    registered = (
        images.groupby("condition", sort=False)["registered"]
        .agg(images="size", registered="sum")
        .reset_index()
    )
    registered["rate"] = (registered["registered"] / registered["images"]).round(3)
    per_pair = (
        store.pair_conditions()
        .groupby(["reference", "condition"], sort=False)["num_matches"]
        .agg(pairs="size", matches="sum")
        .reset_index()
    )
    dropped = Dropped.from_json(store.meta.get("dropped"))
    return BuildSummary(out, work, refs, registered, per_pair, reused, dropped)
