"""Compare two correspondence datasets by content: `python scripts/compare_datasets.py A B`.

Prints each table's digest (xseason.store.digest) for both and exits 1 when any differs.
With one folder it prints that folder's digests.
"""

from __future__ import annotations

import sys

from xseason.store import content_digests


def main(paths: list[str]) -> int:
    digests = [content_digests(p) for p in paths]
    same = True
    for table in digests[0]:
        values = [d.get(table, "-") for d in digests]
        equal = len(set(values)) == 1
        same &= equal
        verdict = "" if len(paths) == 1 else ("same" if equal else "DIFFERENT")
        print(f"{table:<9} {'  '.join(v[:16] for v in values)}  {verdict}")
    return 0 if same else 1


if __name__ == "__main__":
    if not 1 <= len(sys.argv) - 1 <= 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
