"""Subcommands of the `xseason` entry point.

Each subcommand is a module here named like the command (dashes -> underscores) with
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their
command runs, so `xseason --help` stays fast.
"""

COMMANDS: dict[str, str] = {
    "synth": "make the built-in multi-condition scene with exact ground truth",
    "manifest": "write an image manifest from a folder layout or a public dataset's layout",
    "build": "manifest -> reconstruction -> registration -> correspondence dataset (resumable)",
    "stats": "per condition pair: pairs, matches, matches per pair",
    "verify": "check a dataset's files against the sizes, row counts and checksums it records",
    "show": "draw an image pair with a sample of its matches",
    "report": "one static HTML page about a build",
    "export": "the registered reconstruction as a COLMAP model, the clouds as a PLY coloured by condition",
    "import-mat": "the reference paper's per-pair .mat files -> a dataset in our format",
    "export-mat": "a dataset in our format -> the reference paper's per-pair .mat files",
    "train": "train a segmentation network with the correspondence loss",
    "eval": "evaluate checkpoints for seasonal robustness, by condition pair",
    "demo": "the whole chain on the built-in scene: synth, build, train, eval, report",
}
