"""Building blocks every stage uses; nothing here knows the pipeline.

Modules: `errors` (`XSeasonError` and its kinds: the CLI prints them without a traceback),
`config` (typed dataclass configs from YAML + `key=value` overrides: `load_config`, `to_dict`),
`files` (`atomic_path`, `check_replaceable`, `check_outside`, `exclusive_lock`, `write_json`,
`sha256_file`), `geometry` (`Pose`, `Camera`, projection in docs/FORMAT.md §1's pixel
convention), `colmap` (the one pycolmap adapter: pixels, poses, cameras, `point_observations`,
`quiet_logs`, `is_colmap_model`), `log` (the `xseason` logger, `stage`, `log_file`,
`progress`), `plots` (small PNG charts for training curves, evaluation and the report).
"""
