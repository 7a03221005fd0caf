"""Any dataset in kapture format -> cross-condition correspondences.

Layout read (see xseason/inputs/layouts/kapture.py): sensors.txt, rigs.txt, trajectories.txt and
records_camera.txt (in DATASET/sensors/ or DATASET/), images in records_data/. A sequence
is the first folder of each image path; conditions come from --condition SEQ=COND or
--conditions FILE.csv (sequence,condition[,season,daytime,weather]).

  python pipelines/kapture_dataset.py /data/my_kapture --conditions conditions.csv --out out/kapture
"""

import sys

from _common import run_pipeline

if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, "kapture", "pipeline_kapture.yaml", None))
