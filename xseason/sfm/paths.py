"""The layout of a build's work folder: every file and folder name in one place.

    <work>/build.lock              held (flock) while a build runs here (pipeline/build.py)
    <work>/build.log               the build's log
    <work>/build_summary.json      what the last build produced
    <work>/colmap/database.db      cameras, images, SIFT features, verified matches (features.py)
    <work>/colmap/features.json    which manifest the database holds, and the skipped images
    <work>/colmap/pairs-<tag>.txt  the image pairs given to COLMAP's matcher (names it cannot read
                                   there, e.g. with spaces, as aliases: features.match)
    <work>/colmap/models/<folder>/ each sequence's own model, with its status.json (reconstruction.py)
    <work>/sfm/<folder>/           the registered models, all in the world frame (registration.py)
    <work>/joint/                  all registered images triangulated together (registration.py)
    <work>/registration.json       what the registration did, per sequence and per image

`<folder>` is `sequence_folder(sequence)`. These files are the stages' caches: a rerun reuses
what a previous run finished, the stages pass their results on in memory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path


def sequence_folder(sequence: str) -> str:
    """A file-system-safe folder name for a sequence id (stable, unique)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", sequence):
        return sequence
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sequence).strip("._")[:60] or "seq"
    return f"{slug}-{hashlib.sha1(sequence.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class BuildPaths:
    """The work folder of a build (module doc): `root` and the fixed paths below it."""

    root: Path
    lock: Path = field(init=False, repr=False)  # held while a build runs in this work folder
    log: Path = field(init=False, repr=False)  # the build's log
    summary: Path = field(init=False, repr=False)  # what the last build produced
    colmap: Path = field(
        init=False, repr=False
    )  # COLMAP's work: database, pair lists, the sequences' own models
    database: Path = field(init=False, repr=False)
    features: Path = field(
        init=False, repr=False
    )  # the feature stage's record: manifest checksum, image ids, skips
    registered: Path = field(init=False, repr=False)  # the registered models, one sub-folder per sequence
    joint: Path = field(init=False, repr=False)  # the joint model: tracks across sequences
    registration: Path = field(init=False, repr=False)  # registration.json

    def __post_init__(self) -> None:
        root = Path(self.root)
        fixed = {
            "root": root,
            "lock": root / "build.lock",
            "log": root / "build.log",
            "summary": root / "build_summary.json",
            "colmap": root / "colmap",
            "database": root / "colmap" / "database.db",
            "features": root / "colmap" / "features.json",
            "registered": root / "sfm",
            "joint": root / "joint",
            "registration": root / "registration.json",
        }
        for name, path in fixed.items():
            object.__setattr__(self, name, path)

    @classmethod
    def beside(cls, dataset: str | Path) -> BuildPaths:
        """The default work folder of the dataset at `dataset`: `<dataset>.work` next to it."""
        dataset = Path(dataset)
        return cls(dataset.parent / f"{dataset.name}.work")

    def pair_list(self, tag: str) -> Path:
        """The pairs of one matching run (`tag`: which one) as given to COLMAP."""
        return self.colmap / f"pairs-{tag}.txt"

    def sequence_model(self, sequence: str) -> Path:
        """The folder of a sequence's own model (in its own frame unless posed)."""
        return self.colmap / "models" / sequence_folder(sequence)

    def registered_model(self, folder: str) -> Path:
        """A registered model's folder, from its `folder` name in registration.json."""
        return self.registered / folder
