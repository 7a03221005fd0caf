"""4Seasons -> cross-season correspondences between recordings of one route.

Layout read (see xseason/inputs/layouts/fourseasons.py):
DATASET/calibration/undistorted_calib_{0,1,stereo}.txt and
DATASET/recording_<date>_<time>/{undistorted_images/cam0,cam1, GNSSPoses.txt}. Each recording
is a sequence; its condition is its season unless given with --condition RECORDING=CONDITION.
The reference is the first recording's condition unless --reference is given.

  python pipelines/four_seasons.py /data/4seasons/office_loop --out out/4seasons \
      --condition recording_2020-03-24_17-36-22=spring-evening
"""

import sys

from _common import run_pipeline

if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, "4seasons", "pipeline_4seasons.yaml", None))
