"""Aachen Day-Night v1.1 -> day/night correspondences.

Layout read (see xseason/inputs/layouts/aachen.py): DATASET/images_upright/, the COLMAP model
DATASET/3D-models/aachen_v_1_1/ (day database poses and cameras) and
DATASET/queries/night_time_queries_with_intrinsics.txt. The night queries have no published
poses: the build registers them against the posed day database (condition `day`, the reference).

  python pipelines/aachen_v1_1.py /data/aachen_v1.1 --out out/aachen
"""

import sys

from _common import run_pipeline

from xseason.inputs.layouts.aachen import DAY

if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, "aachen", "pipeline_aachen.yaml", [DAY.condition]))
