"""Looking at a built dataset: statistics, pair drawings, the HTML report, COLMAP and PLY exports.

Modules: `stats` (`condition_pair_stats`, `format_stats`: `xseason stats`), `show` (`draw_pair`:
`xseason show`), `report` (`write_report`: one static HTML page about a build), `exports`
(`export_colmap`, `export_ply`: the registered reconstruction and clouds coloured by condition).
Import them from their modules: this package imports none, so that `xseason stats` does not
load pycolmap.
"""
