"""Aachen Day-Night v1.1 -> day/night correspondences.

Layout read (see xseason/layouts/aachen.py): DATASET/images_upright/, the COLMAP model
DATASET/3D-models/aachen_v_1_1/ (day database poses and cameras) and
DATASET/queries/night_time_queries_with_intrinsics.txt. The night queries have no published
poses: the build registers them against the posed day database (condition `day`, the reference).

  python pipelines/aachen_v1_1.py /data/aachen_v1.1 --out out/aachen
"""

import sys

from _common import run_pipeline

from xseason.layouts.aachen import DAY, aachen_rows


def add_arguments(parser):
    parser.add_argument("--day-queries", action="store_true", help="also use the day queries (unposed)")


if __name__ == "__main__":
    sys.exit(run_pipeline(
        __doc__, lambda a: aachen_rows(a.dataset, day_queries=a.day_queries), "pipeline_aachen.yaml",
        [DAY.condition], add_arguments,
    ))
