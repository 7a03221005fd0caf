"""The stages chained: `build` (`run_build(manifest, out, cfg) -> BuildSummary`: manifest ->
reconstruction -> registration -> association -> correspondences -> dataset, resumable), with
`dropped` (`dropped_of` -> `Dropped`: what a build dropped and why; `PartialBuildError` for an
incomplete result), and `demo` (`run_demo(cfg) -> DemoResult`: build, train, evaluate and report on
the built-in scene).

Import them from their modules (`xseason.pipeline.build`, `xseason.pipeline.dropped`,
`xseason.pipeline.demo`): this package imports none of them, so that a build does not load torch.
"""
