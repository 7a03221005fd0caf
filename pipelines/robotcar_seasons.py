"""RobotCar Seasons v2 -> cross-season correspondences (the reference paper's second dataset).

Layout read (see xseason/layouts/robotcar.py for every convention):
  DATASET/images/<condition>/<camera>/<timestamp>.jpg, DATASET/intrinsics/<camera>_intrinsics.txt,
  DATASET/3D-models/all-merged/all.nvm (reference poses), DATASET/robotcar_v2_train.txt (query poses)
Conditions: the image folders; `overcast-reference` is the reference, against dawn, dusk,
night, night-rain, overcast-summer, overcast-winter, rain, snow and sun. By default only
query images with released training poses are used (all sequences posed).

  python pipelines/robotcar_seasons.py /data/RobotCar-Seasons --only night --only snow --out out/robotcar
"""

import sys

from _common import run_pipeline

from xseason.layouts.robotcar import CAMERAS, REFERENCE, robotcar_rows


def add_arguments(parser):
    parser.add_argument("--only", action="append", metavar="CONDITION", help="query condition (repeatable; default all)")
    parser.add_argument("--camera", action="append", choices=CAMERAS, help="camera (repeatable; default all three)")
    parser.add_argument("--queries", choices=("posed", "all"), default="posed")


if __name__ == "__main__":
    sys.exit(run_pipeline(
        __doc__, lambda a: robotcar_rows(a.dataset, a.only, a.queries, a.camera or CAMERAS),
        "pipeline_robotcar.yaml", [REFERENCE], add_arguments,
    ))
