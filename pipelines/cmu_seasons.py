"""(Extended) CMU Seasons -> cross-season correspondences (the reference paper's first dataset).

Layout read (see xseason/inputs/layouts/cmu.py for every convention):
  DATASET/intrinsics.txt, DATASET/slice<N>/{database,query}/*.jpg,
  DATASET/slice<N>/ground-truth-database-images-slice<N>.txt, DATASET/slice<N>/camera-poses/*.txt
Conditions: the database is the reference `sunny-nofoliage`; each query traversal gets the
condition of its capture date (README table), e.g. `lowsun-nofoliage-snow` for 21 Dec 2010.
Only query images with ground-truth poses are used by default, so every sequence is posed.

  python pipelines/cmu_seasons.py /data/Extended-CMU-Seasons --slice 2 --slice 3 --out out/cmu
"""

import sys

from _common import run_pipeline

from xseason.inputs.layouts.cmu import REFERENCE

if __name__ == "__main__":
    sys.exit(run_pipeline(__doc__, "cmu", "pipeline_cmu.yaml", [REFERENCE.condition]))
