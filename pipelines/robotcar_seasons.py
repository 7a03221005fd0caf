"""RobotCar Seasons v2 -> cross-season correspondences (the reference paper's second dataset).

Layout read (see xseason/inputs/layouts/robotcar.py for every convention):
  DATASET/images/<condition>/<camera>/<timestamp>.jpg, DATASET/intrinsics/<camera>_intrinsics.txt,
  DATASET/3D-models/all-merged/all.nvm (reference poses), DATASET/robotcar_v2_train.txt (query poses)
Conditions: the image folders; `overcast-reference` is the reference, against dawn, dusk,
night, night-rain, overcast-summer, overcast-winter, rain, snow and sun. By default only
query images with released training poses are used (all sequences posed).

  python pipelines/robotcar_seasons.py /data/RobotCar-Seasons --only night --only snow --out out/robotcar
"""

import sys

from _common import run_pipeline

from xseason.inputs.layouts.robotcar import REFERENCE

if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, "robotcar", "pipeline_robotcar.yaml", [REFERENCE]))
