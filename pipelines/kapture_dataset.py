"""Any dataset in kapture format -> cross-condition correspondences.

Layout read (see xseason/layouts/kapture.py): sensors.txt, rigs.txt, trajectories.txt and
records_camera.txt (in DATASET/sensors/ or DATASET/), images in records_data/. A sequence
is the first folder of each image path; conditions come from --condition SEQ=COND or
--conditions FILE.csv (sequence,condition[,season,daytime,weather]).

  python pipelines/kapture_dataset.py /data/my_kapture --conditions conditions.csv --out out/kapture
"""

import sys

from _common import run_pipeline

from xseason.layouts import conditions_from
from xseason.layouts.kapture import kapture_rows


def add_arguments(parser):
    parser.add_argument("--condition", action="append", default=[], metavar="SEQ=COND")
    parser.add_argument("--conditions", metavar="FILE.csv")
    parser.add_argument("--default-condition", metavar="COND")
    parser.add_argument("--images", help="image folder (default: records_data/)")


def layout(a):
    return kapture_rows(a.dataset, *conditions_from(a.condition, a.conditions, a.default_condition), images=a.images)


if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, layout, "pipeline_kapture.yaml", None, add_arguments))
