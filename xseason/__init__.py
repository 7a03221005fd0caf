"""xseason: cross-season 2D-2D correspondence datasets and training for seasonal robustness.

Subpackages in pipeline order; a module imports only from its own and lower ones
(docs/ARCHITECTURE.md): core < inputs < synth < sfm < matching < store < learn < reports
< pipeline < commands. `xseason.pipeline.build.run_build` chains the dataset stages,
`xseason.pipeline.demo.run_demo` the whole experiment on the built-in scene.
"""

__version__ = "0.1.0"
