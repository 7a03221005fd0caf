"""`xseason build`: manifest -> reconstruction -> registration -> association ->
correspondences -> dataset, stage by stage, resumable.

Intermediate work lives in a work folder beside the dataset (`<out>.work/` unless given; its
layout: `xseason.sfm.paths.BuildPaths`): the COLMAP database, the per-sequence and registered
models, registration.json and the build's log. The stages pass their results on in memory; the
files are caches: each stage reuses what a previous run finished there. The dataset
itself is written to a temporary folder and renamed into place only when complete, so a
crash never leaves a dataset that looks whole; a complete dataset built from the same
manifest and config is not rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xseason.core.config import load_config, to_dict
from xseason.core.errors import ConfigError, OutputError
from xseason.core.files import check_outside, exclusive_lock, write_json
from xseason.core.log import log_file, stage
from xseason.inputs.manifest import Manifest, read_manifest
from xseason.matching.association import AssociationConfig, associate_clouds, point_table_from_reconstructions
from xseason.matching.correspondences import CorrespondenceConfig, make_correspondences
from xseason.matching.surfaces import SurfaceConfig
from xseason.matching.views import views_from_manifest
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import extract
from xseason.sfm.paths import BuildPaths
from xseason.sfm.reconstruction import reconstruct
from xseason.sfm.registration import register
from xseason.store import StoreConfig, check_dataset_output, write_dataset
from xseason.store.tables import images_table

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path("data_manifest.csv")
DEFAULT_SCENE = Path("data/demo")


def ensure_default_scene(manifest: Path = DEFAULT_MANIFEST, scene: Path = DEFAULT_SCENE) -> None:
    """Render the built-in `demo` scene into `scene` when the default manifest's images are missing."""
    if (scene / "manifest.csv").is_file():
        return
    from xseason.synth import render_scene, synth_config

    log.info("rendering the built-in demo scene into %s/ (once) ...", scene)
    render_scene(scene, synth_config("demo"), root_manifest=manifest)


@dataclass
class BuildConfig(SfMConfig):
    """Every knob of the build, one section per stage (configs/build.yaml documents them): the SfM
    stages' sections (`SfMConfig`), then the later stages'."""

    association: AssociationConfig = field(default_factory=AssociationConfig)
    correspondences: CorrespondenceConfig = field(default_factory=CorrespondenceConfig)
    surfaces: SurfaceConfig = field(default_factory=SurfaceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


@dataclass
class BuildSummary:
    """What a build produced: per condition the registration rate, per condition pair the counts."""

    dataset: Path
    work_dir: Path
    references: list[str]
    registered: pd.DataFrame  # condition, images, registered, rate
    pairs: pd.DataFrame  # reference, condition, pairs, matches, densified_share
    reused: bool = False

    def format(self) -> str:
        lines = [
            f"dataset: {self.dataset}" + ("  (already complete: reused)" if self.reused else ""),
            f"work folder: {self.work_dir}",
            f"reference condition(s): {', '.join(self.references)}",
            "",
            "images registered per condition:",
            self.registered.to_string(index=False),
            "",
            "pairs and matches per condition pair:",
            self.pairs.to_string(index=False) if len(self.pairs) else "  (no pairs)",
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
) -> BuildSummary:
    """Build the correspondence dataset at `out` from `manifest` (resumable; see module doc).

    Before any work the outputs are checked (`check_outputs`); the build then holds an exclusive
    lock on the dataset (`.<out>.lock` beside it) and on the work folder (`<work>/build.lock`), so
    that a second build into either fails at once with a `LockError` naming this process."""
    cfg = config or BuildConfig()
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, image_root=image_root)
    out = Path(out)
    if out.name in ("", ".."):  # "." or "a/..": name the folder itself (its lock and work go beside it)
        out = Path(os.path.abspath(out))
    paths = BuildPaths(work_dir) if work_dir is not None else BuildPaths.beside(out)
    refs = _references(manifest, references)
    check_outputs(manifest, out, paths)
    with exclusive_lock(dataset_lock(out), f"the dataset {out}"):
        return _build(manifest, out, paths, cfg, refs, progress)


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
    manifest: Manifest, out: Path, paths: BuildPaths, cfg: BuildConfig, refs: list[str], progress: bool
) -> BuildSummary:
    """`run_build` once its outputs are checked, holding the dataset's lock."""
    work = paths.root
    config_dict = to_dict(cfg)
    stale = _rebuild_reason(out, manifest.checksum, config_dict, refs)
    if stale is None:
        log.info(
            "%s is complete and was built from this manifest (sha256 %s...), config and "
            "reference(s) %s: reused",
            out,
            manifest.checksum[:12],
            ", ".join(refs),
        )
        return _summary(out, work, refs, reused=True)

    resumed = work.is_dir() and any(p != paths.lock for p in work.iterdir())
    work.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(paths.lock, f"the work folder {work}"), log_file(paths.log), stage("build"):
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
        with stage("features"):
            index = extract(manifest, paths, cfg.features)
        with stage("reconstruction"):
            models = reconstruct(manifest, index, paths, cfg)
        with stage("registration"):
            registration = register(manifest, index, models, paths, cfg, refs)
            recs = registration.models
        with stage("association"):
            views = views_from_manifest(manifest, recs, cfg.features.default_focal_factor)
            points = point_table_from_reconstructions(recs, views, cfg.association.spacing_k)
            associated = associate_clouds(points, refs, cfg.association)
        with stage("correspondences"):
            tables = make_correspondences(associated, cfg.correspondences, cfg.surfaces, progress=progress)
        with stage("store"):
            images = _with_labels(images_table(views), manifest)
            condition_of = {r.sequence: r.condition for r in manifest.images}
            write_dataset(
                out,
                images,
                tables.pairs,
                tables.matches,
                config=config_dict,
                manifest_checksum=manifest.checksum,
                image_root=manifest.root,
                points3d=tables.points3d if len(tables.points3d) else None,
                store_config=cfg.store,
                extra_meta={
                    "references": refs,
                    "manifest": str(manifest.path.resolve()),
                    "work_dir": str(work.resolve()),
                    "registration_rate": registration.rate(condition_of),
                },
            )
            summary = _summary(out, work, refs)
            write_json(
                paths.summary,
                {
                    "dataset": str(out),
                    "references": refs,
                    "registered": summary.registered.to_dict(orient="records"),
                    "pairs": summary.pairs.to_dict(orient="records"),
                },
            )
    return summary


def _references(manifest: Manifest, references: list[str] | None) -> list[str]:
    conditions = manifest.conditions()
    refs = list(references) if references else [manifest.images[0].condition]
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
    root = manifest.root.resolve()
    out["label"] = [
        Path(labels[name]).resolve().relative_to(root).as_posix() if name in labels else None
        for name in out["image"]
    ]
    return out


def _rebuild_reason(out: Path, checksum: str, config: dict, refs: list[str]) -> str | None:
    """Why the dataset at `out` must be built, or None when it is complete and built from the same inputs."""
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
    return BuildSummary(out, work, refs, registered, per_pair, reused)
