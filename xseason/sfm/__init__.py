"""Manifest -> SfM -> registered models in one world frame, in the order the build runs them.

- `config`: `SfMConfig` (sections `FeatureConfig`, `MatchingConfig`, `ReconstructionConfig`,
  `RegistrationConfig`), which the build config extends;
- `paths`: `BuildPaths`, the work folder's layout (`sequence_folder`);
- `features`: `extract` (SIFT into the build's COLMAP database) -> `FeatureIndex`, `match`;
- `pairs`: which pairs are matched (`candidate_pairs`, `cross_pairs`, ...);
- `reconstruction`: `reconstruct` -> `SequenceModels` (each sequence's own model and `ModelStatus`);
- `sim3`: similarity transforms (`umeyama`, `ransac_sim3`, `fit_to_poses`) and `pose_errors`;
- `registration`: `register` -> `Registration` (results.py: `SequenceStatus`, `SequenceResult`,
  `ImageResult`, the registered models), `load_registration`, `load_registered`.
"""
