"""4Seasons -> cross-season correspondences between recordings of one route.

Layout read (see xseason/layouts/fourseasons.py): DATASET/calibration/undistorted_calib_{0,1,stereo}.txt
and DATASET/recording_<date>_<time>/{undistorted_images/cam0,cam1, GNSSPoses.txt}. Each recording
is a sequence; its condition is its season unless given with --condition RECORDING=CONDITION.
The reference is the first recording's condition unless --reference is given.

  python pipelines/four_seasons.py /data/4seasons/office_loop --out out/4seasons \
      --condition recording_2020-03-24_17-36-22=spring-evening
"""

import sys

from _common import run_pipeline

from xseason.layouts import parse_condition_args
from xseason.layouts.fourseasons import fourseasons_rows


def add_arguments(parser):
    parser.add_argument("--only", action="append", metavar="RECORDING", help="recording to use (repeatable; default all)")
    parser.add_argument("--condition", action="append", default=[], metavar="RECORDING=CONDITION")
    parser.add_argument("--pose-file", default="GNSSPoses.txt", help="pose file of each recording (default: %(default)s)")


if __name__ == "__main__":
    sys.exit(run_pipeline(
        __doc__,
        lambda a: fourseasons_rows(a.dataset, a.only, parse_condition_args(a.condition), pose_file=a.pose_file),
        "pipeline_4seasons.yaml", None, add_arguments,
    ))
