"""xseason: cross-season 2D-2D correspondence datasets and training for seasonal robustness.

Pipeline (one module per stage, data flows one way):
manifest -> reconstruction -> registration -> association -> correspondences -> store
-> dataset -> trainer -> evaluation.  `synth` makes a multi-condition scene with exact
ground truth, `groundtruth` checks everything against it.
"""

__version__ = "0.1.0"
