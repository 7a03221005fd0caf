"""Cache keys of the SfM stages: what each cached result in the work folder was made from.

A stage's key digests the inputs it reads, each a named part:

    database        the manifest, the image and mask files (size and modification time), the
                    `features` and `matching` sections, the hloc / kapture files they name
                    (likewise, every file of a folder), pycolmap's version and the code of
                    features.py, pairs.py, hloc.py and kapture.py (the
                    database holds the features and the matches); with
                    `reconstruction.sfm_from`, its models' files too
    reconstruction  the database's key, the `reconstruction` section, reconstruction.py
    registration    the reconstruction's key, the `registration` section, the reference
                    conditions, registration.py, sim3.py and results.py

Each key includes the one before it, so a change reruns its stage and every stage after it. A
stage's record (features.json, a model's status.json, registration.json) holds its key; a
record with another key (or none: a work folder of an older version) is not reused, and
`StageKey.reason` names the parts that changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pycolmap

from xseason.inputs.manifest import Manifest
from xseason.sfm.config import SfMConfig
from xseason.sfm.paths import BuildPaths

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class StageKey:
    """The named input digests of one stage and their combined digest."""

    parts: dict[str, str]

    @property
    def digest(self) -> str:
        return _sha(json.dumps(self.parts, sort_keys=True))

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "parts": self.parts}

    def reason(self, recorded: Any) -> str | None:
        """Why a cached result recorded with key `recorded` (`to_json`, or anything else) cannot be
        reused; None when it can."""
        if not isinstance(recorded, dict) or not isinstance(recorded.get("parts"), dict):
            return "its record has no cache key (written by an older version)"
        if recorded.get("digest") == self.digest:
            return None
        old = recorded["parts"]
        changed = [name for name, value in self.parts.items() if old.get(name) != value]
        return f"its {', '.join(changed) or 'key'} changed"


@dataclass(frozen=True)
class StageKeys:
    """The keys of the SfM stages of one build (module doc)."""

    database: StageKey
    reconstruction: StageKey
    registration: StageKey


def stage_keys(manifest: Manifest, cfg: SfMConfig, references: list[str] | None = None) -> StageKeys:
    """The keys of the SfM stages for `manifest` and `cfg` (module doc)."""
    database = StageKey(
        {
            "manifest": manifest.checksum,
            "image files": _files_digest(manifest),
            "features config": _section(cfg.features),
            "matching config": _section(cfg.matching),
            "imported files": _stat_digest(
                [
                    cfg.features.hloc_features,
                    cfg.matching.hloc_matches,
                    *_folder_files(cfg.features.kapture_keypoints),
                    *_folder_files(cfg.matching.kapture_matches),
                ]
            ),
            **_sfm_from(cfg),
            "code": _code("features.py", "pairs.py", "hloc.py", "kapture.py") + pycolmap.__version__,
        }
    )
    reconstruction = StageKey(
        {
            "database": database.digest,
            "reconstruction config": _section(cfg.reconstruction),
            "code": _code("reconstruction.py"),
        }
    )
    registration = StageKey(
        {
            "reconstruction": reconstruction.digest,
            "registration config": _section(cfg.registration),
            "references": _sha(json.dumps(sorted(references or []))),
            "code": _code("registration.py", "sim3.py", "results.py"),
        }
    )
    return StageKeys(database, reconstruction, registration)


def cache_report(manifest: Manifest, paths: BuildPaths, keys: StageKeys) -> dict[str, str]:
    """Per SfM stage, whether the work folder's cached result will be reused, or why it is (re)made."""

    def verdict(record_path: Path, key: StageKey, complete: bool = True) -> str:
        if not record_path.is_file():
            return "made (no cached result)"
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return "made anew (its record is unreadable)"
        stale = key.reason(record.get("key"))
        if stale is None:
            return "reused" if complete or record.get("complete") else "resumed"
        return f"made anew ({stale})"

    models = [
        verdict(paths.sequence_model(seq) / "status.json", keys.reconstruction)
        for seq in manifest.sequences()
    ]
    made = [v for v in models if v != "reused"]
    return {
        "features": verdict(paths.features, keys.database, complete=False),
        "reconstruction": "reused" if not made else f"{len(made)} of {len(models)} sequence models {made[0]}",
        "registration": verdict(paths.registration, keys.registration),
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _section(section: Any) -> str:
    return _sha(json.dumps(asdict(section), sort_keys=True, default=str))


def _code(*modules: str) -> str:
    return code_digest([_HERE / name for name in modules])


def code_digest(files: list[Path]) -> str:
    """A digest of source files' bytes (a code fingerprint)."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _sfm_from(cfg: SfMConfig) -> dict[str, str]:
    """The models of `reconstruction.sfm_from` (their points2D lead their images' keypoints): which
    sequence each is for, and every file of them (none when there are none, so other keys stay)."""
    given = cfg.reconstruction.sfm_from
    if not given:
        return {}
    files = [path for folder in given.values() for path in _folder_files(folder)]
    return {
        "sfm_from": _sha(json.dumps({k: str(v) for k, v in given.items()}, sort_keys=True))
        + _stat_digest(files)
    }


def _files_digest(manifest: Manifest) -> str:
    """Size and modification time of every image and mask file."""
    return _stat_digest([path for record in manifest.images for path in (record.path, record.mask)])


def _folder_files(folder: Path | None) -> list[Path]:
    """Every file under `folder` (sorted), or [folder] itself when it is not a folder (none: [])."""
    if folder is None:
        return []
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]


def _stat_digest(paths: list[Path | None]) -> str:
    """Size and modification time of each file of `paths` (None skipped, a missing file counted as such)."""
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        try:
            st = Path(path).stat()
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())
    return h.hexdigest()[:16]


__all__ = ["StageKey", "StageKeys", "cache_report", "code_digest", "stage_keys"]
