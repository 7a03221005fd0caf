"""The stages chained: `build` (`run_build(manifest, out, cfg) -> BuildSummary`: manifest ->
reconstruction -> registration -> association -> correspondences -> dataset, resumable) and
`demo` (`run_demo(cfg) -> DemoResult`: build, train, evaluate and report on the built-in scene).

Import them from their modules (`xseason.pipeline.build`, `xseason.pipeline.demo`): this
package imports neither, so that a build does not load torch.
"""
