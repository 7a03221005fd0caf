"""The SfM stages' settings: one section per step, `SfMConfig` bundling them.

`SfMConfig` holds the sections read by `features`, `reconstruction` and `registration`; the
build config (`xseason.pipeline.build.BuildConfig`) extends it with the later stages' sections,
so every SfM stage is typed with `SfMConfig` and takes the build config as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pycolmap

from xseason.inputs.manifest import DEFAULT_FOCAL_FACTOR


@dataclass
class FeatureConfig:
    """SIFT extraction (pycolmap)."""

    # Not settings (no annotation: not dataclass fields). Peak memory of pycolmap 4.2 CPU SIFT, measured
    # with ru_maxrss at 800x600 to 2400x1800: 74-77 bytes per pixel of the first octave's image.
    SIFT_BYTES_PER_PIXEL = 80
    MAX_SIFT_MEMORY = 8 << 30  # bytes; `validate` refuses settings whose largest image needs more

    max_num_features: int = 8192  # per image, strongest kept
    peak_threshold: float = 0.002  # COLMAP's 0.0067 finds ~4x fewer correct night-day matches on `demo`
    edge_threshold: float = 10.0  # SIFT edge-response rejection
    first_octave: int = -1  # -1 upsamples the image once: more, finer features (and 4x SIFT's memory)
    max_image_size: int = 3200  # px, longest side: a larger image is downscaled for SIFT (COLMAP's default)
    domain_size_pooling: bool = False  # DSP-SIFT descriptors (slower, more robust to appearance change)
    darkness_adaptivity: bool = True  # adapt the peak threshold to dark images (night)
    default_focal_factor: float = DEFAULT_FOCAL_FACTOR  # no intrinsics: SIMPLE_RADIAL, f = factor * max(w, h)
    hloc_features: Path | None = None  # an hloc features.h5: its keypoints instead of SIFT (sfm/hloc.py)
    kapture_keypoints: Path | None = None  # a kapture reconstruction/keypoints/<type> folder, instead of SIFT

    def validate(self) -> None:
        if self.max_num_features < 1:
            raise ValueError("max_num_features must be >= 1")
        if self.default_focal_factor <= 0:
            raise ValueError("default_focal_factor must be > 0")
        if self.max_image_size < 32 or self.first_octave < -1:
            raise ValueError("max_image_size must be >= 32 and first_octave >= -1")
        need = self.sift_memory(self.max_image_size, self.max_image_size)
        if need > self.MAX_SIFT_MEMORY:
            side = round(self.max_image_size * 2.0**-self.first_octave)
            raise ValueError(
                f"max_image_size={self.max_image_size} with first_octave={self.first_octave} has SIFT "
                f"work on up to {side}x{side} pixels, about {need / 2**30:.0f} GiB (limit "
                f"{self.MAX_SIFT_MEMORY / 2**30:.0f} GiB): lower max_image_size, or set first_octave=0"
            )

    def sift_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the feature stage gives SIFT for such an image: longest side cut to
        `max_image_size`, aspect kept."""
        scale = min(1.0, self.max_image_size / max(width, height))
        return max(round(width * scale), 1), max(round(height * scale), 1)

    def sift_memory(self, width: int, height: int) -> int:
        """Rough peak bytes of SIFT on such an image: pixels of its `sift_size`, x4 per octave below 0
        (`first_octave=-1` doubles both sides), x `SIFT_BYTES_PER_PIXEL`."""
        w, h = self.sift_size(width, height)
        return int(w * h * 4.0**-self.first_octave * self.SIFT_BYTES_PER_PIXEL)

    def options(self) -> pycolmap.FeatureExtractionOptions:
        """COLMAP's extraction options (one thread per extractor)."""
        opts = pycolmap.FeatureExtractionOptions()
        opts.num_threads = 1
        sift = opts.sift
        sift.max_num_features = self.max_num_features
        sift.peak_threshold = self.peak_threshold
        sift.edge_threshold = self.edge_threshold
        sift.first_octave = self.first_octave
        sift.domain_size_pooling = self.domain_size_pooling
        sift.darkness_adaptivity = self.darkness_adaptivity
        return opts


@dataclass
class MatchingConfig:
    """Which image pairs are matched, and the matcher / verification settings."""

    exhaustive_max_images: int = 40  # a sequence up to this size is matched exhaustively
    sequential_overlap: int = 10  # else: each image with its next `overlap` images
    cross_neighbors: int = 5  # with known poses/priors: nearest images of the other sequence
    cross_max_angle: float = 45.0  # degrees between viewing directions (posed images only)
    cross_max_pairs: int = 600  # without positions: exhaustive, subsampled to this many pairs
    cross_posed: bool = True  # also match posed sequences with each other: joint tracks give point matches
    epipolar_guided: bool = False  # posed images of two sequences: matched along their known epipolar lines
    epipolar_max_error: float = 1.5  # pixels from the epipolar line, guided matching
    localize_max_pairs: int = 40  # pairs per image registered one by one (absolute pose)
    max_ratio: float = 0.8  # Lowe's ratio test
    max_distance: float = 0.7  # max descriptor distance (normalised)
    cross_check: bool = True  # keep mutual nearest neighbours only
    min_num_inliers: int = 15  # per verified pair
    max_error: float = 4.0  # pixels, two-view RANSAC
    num_threads: int = -1  # -1 = all cores
    hloc_matches: Path | None = None  # an hloc matches.h5 (needs features.hloc_features), verified here
    kapture_matches: Path | None = None  # kapture reconstruction/matches/<type> (needs kapture_keypoints)

    def validate(self) -> None:
        if self.sequential_overlap < 1 or self.cross_neighbors < 1:
            raise ValueError("sequential_overlap and cross_neighbors must be >= 1")
        if not 0 < self.cross_max_angle <= 180:
            raise ValueError("cross_max_angle must be in (0, 180]")


@dataclass
class ReconstructionConfig:
    """Triangulation (posed sequences) and incremental mapping (unposed ones), or a sequence's own model
    (`sfm_from`, reconstruction.py)."""

    min_tri_angle: float = 2.0  # degrees; 1.0: 18% more points on `demo`, 14% worse median depth error
    ignore_two_view_tracks: bool = False  # keep points seen by two images only
    max_reproj_error: float = 4.0  # pixels, filtering after triangulation / BA
    init_min_num_inliers: int = 30  # incremental mapping: verified matches of the first pair (COLMAP: 100)
    init_min_tri_angle: float = 8.0  # degrees, initial pair
    abs_pose_min_num_inliers: int = 12  # 2D-3D inliers to add an image (20+: night / rain stay at 2 images)
    min_model_size: int = 3  # images; smaller models are discarded
    refine_intrinsics: bool = True  # unposed sequences without given intrinsics
    seed: int = 0  # RANSAC / mapper random seed
    num_threads: int = -1  # -1 = all cores
    sfm_from: dict[str, Path] = field(default_factory=dict)  # sequence -> its COLMAP model (text/binary)
    sfm_from_max_pose_error: float = 1e-3  # posed: model vs manifest centres (x scene size), rotations (rad)

    def validate(self) -> None:
        if self.min_tri_angle <= 0 or self.max_reproj_error <= 0:
            raise ValueError("min_tri_angle and max_reproj_error must be > 0")
        if self.sfm_from_max_pose_error <= 0:
            raise ValueError("sfm_from_max_pose_error must be > 0")
        for seq, folder in self.sfm_from.items():
            found = {p.name for p in Path(folder).iterdir()} if Path(folder).is_dir() else set()
            if not all({f"{name}.bin", f"{name}.txt"} & found for name in ("cameras", "images", "points3D")):
                raise ValueError(
                    f"sfm_from.{seq}: {folder} is not a COLMAP model folder (cameras, images and "
                    "points3D .bin or .txt)"
                )

    def pipeline_options(
        self, names: list[str] | None = None, refine: bool = False
    ) -> pycolmap.IncrementalPipelineOptions:
        """COLMAP's options; `refine`: BA refines intrinsics (only for cameras without given ones)."""
        opts = pycolmap.IncrementalPipelineOptions()
        opts.random_seed = opts.mapper.random_seed = opts.triangulation.random_seed = self.seed
        opts.num_threads = self.num_threads
        opts.min_model_size = self.min_model_size
        refine_intrinsics = refine and self.refine_intrinsics
        opts.ba_refine_focal_length = opts.ba_refine_extra_params = refine_intrinsics
        mapper = opts.mapper
        mapper.abs_pose_refine_focal_length = mapper.abs_pose_refine_extra_params = refine_intrinsics
        opts.triangulation.min_angle = self.min_tri_angle
        opts.triangulation.ignore_two_view_tracks = self.ignore_two_view_tracks
        opts.triangulation.complete_max_reproj_error = self.max_reproj_error
        opts.triangulation.merge_max_reproj_error = self.max_reproj_error
        opts.mapper.filter_min_tri_angle = self.min_tri_angle
        opts.mapper.filter_max_reproj_error = self.max_reproj_error
        opts.mapper.init_min_num_inliers = self.init_min_num_inliers
        opts.mapper.init_min_tri_angle = self.init_min_tri_angle
        opts.mapper.abs_pose_min_num_inliers = self.abs_pose_min_num_inliers
        if names is not None:
            opts.image_names = names
        return opts


@dataclass
class RegistrationConfig:
    """Alignment of sequences, joint refinement and one-by-one registration of images (registration.py)."""

    ransac_error: float = 0.02  # 3D-3D inlier distance, as a fraction of the world's extent
    ransac_trials: int = 2000  # 3D-3D similarity hypotheses
    prior_max_distance: float = 0.0  # with priors: cameras' median distance to them (0 = 3x the world's)
    prior_max_scale_ratio: float = 1.3  # with priors: max ratio of the alignment's scale to the priors'
    min_inliers: int = 12  # 3D-3D inliers needed to accept a sequence's transform
    pnp_max_error: float = 8.0  # pixels, absolute-pose RANSAC
    pnp_min_inliers: int = 15  # absolute pose: inliers needed to register an image
    pnp_min_inlier_ratio: float = 0.1  # ... and as a share of its 2D-3D matches
    lone_min_inliers: int = 30  # ... when no other frame of its sequence (of several) is registered
    min_located_images: int = 3  # images registered by absolute pose needed to align a sequence on them
    pose_max_rotation: float = 5.0  # degrees: such an image disagreeing more is left out of that fit
    pose_max_centre: float = 5.0  # ... or with a centre residual above this many times the median
    refine_rounds: int = 2  # joint triangulation + bundle adjustment rounds (0 = keep the similarity)
    refine_max_iterations: int = 50  # per bundle adjustment
    refine_loss_scale: float = 1.0  # pixels, Cauchy loss of the joint bundle adjustment
    joint_tracks: bool = True  # also one model of all registered images: tracks across sequences
    min_pose_agreement: float = 0.5  # share of an image's verified matches its pose must fit (checks.py)
    continuity_max_ratio: float = 3.0  # a step this many x the sequence's median speed / turn is a break
    continuity_min_turn: float = 6.0  # degrees: a smaller turn of the travel direction in the camera is none
    continuity_min_jump: float = 0.01  # fraction of the world's extent: a shorter step is never a break
    prior_max_z: float = 5.0  # a sequence off its priors by more standard errors of their noise fails ...
    prior_min_offset: float = 0.05  # ... when also off by more than this fraction of the priors' extent
    free_space_cell: float = 8.0  # pixels: a point meets what a camera sees in its image cell this wide
    free_space_depth_noise: float = 2.0  # pixels of ray error: over the triangulation angle, a depth's noise
    free_space_margin: float = 0.05  # ... plus this share of the depth: a point in front by more conflicts
    free_space_max_sigma: float = 0.25  # points with a larger relative depth noise are not tested
    free_space_max_share: float = 0.2  # a sequence whose points conflict with the world's more often fails..
    free_space_z: float = 2.0  # ... by this many standard errors (binomial lower bound of the share)
    seed: int = 0  # RANSAC random seed

    def validate(self) -> None:
        if self.ransac_error <= 0 or self.pnp_max_error <= 0 or self.refine_loss_scale <= 0:
            raise ValueError("ransac_error, pnp_max_error and refine_loss_scale must be > 0")
        if self.ransac_trials < 1 or self.prior_max_distance < 0 or self.prior_max_scale_ratio <= 1:
            raise ValueError("ransac_trials must be >= 1, prior_max_distance >= 0, prior_max_scale_ratio > 1")
        if self.lone_min_inliers < self.pnp_min_inliers:
            raise ValueError("lone_min_inliers must be >= pnp_min_inliers")
        if self.refine_rounds < 0 or self.refine_max_iterations < 1:
            raise ValueError("refine_rounds must be >= 0 and refine_max_iterations >= 1")
        if not 0 <= self.min_pose_agreement <= 1:
            raise ValueError("min_pose_agreement must be in [0, 1]")
        if self.continuity_max_ratio <= 1 or self.continuity_min_turn < 0 or self.continuity_min_jump < 0:
            raise ValueError("continuity_max_ratio must be > 1, continuity_min_turn and _min_jump >= 0")
        if self.prior_max_z <= 0 or self.prior_min_offset < 0:
            raise ValueError("prior_max_z must be > 0 and prior_min_offset >= 0")
        if min(self.free_space_cell, self.free_space_depth_noise, self.free_space_max_sigma) <= 0:
            raise ValueError("free_space_cell, free_space_depth_noise and free_space_max_sigma must be > 0")
        if not 0 <= self.free_space_margin < 1 or not 0 < self.free_space_max_share <= 1:
            raise ValueError("free_space_margin must be in [0, 1) and free_space_max_share in (0, 1]")
        if self.free_space_z < 0:
            raise ValueError("free_space_z must be >= 0")


@dataclass
class SfMConfig:
    """The sections read by the SfM stages (the build config extends it with the later stages')."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)

    def validate(self) -> None:
        if self.matching.hloc_matches is not None and self.features.hloc_features is None:
            raise ValueError(
                "matching.hloc_matches needs features.hloc_features: its indices are those files' keypoints"
            )
        if self.matching.kapture_matches is not None and self.features.kapture_keypoints is None:
            raise ValueError(
                "matching.kapture_matches needs features.kapture_keypoints: its indices are those keypoints"
            )
        if self.features.hloc_features is not None and self.features.kapture_keypoints is not None:
            raise ValueError("features: give hloc_features or kapture_keypoints, not both")
        imported = self.features.hloc_features or self.features.kapture_keypoints
        if self.reconstruction.sfm_from and imported:
            raise ValueError(
                "reconstruction.sfm_from needs SIFT features: an imported model's points2D lead its "
                "images' keypoints, which hloc / kapture match indices cannot refer to"
            )
