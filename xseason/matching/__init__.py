"""Registered models -> associated points -> pairs and matches, in the order the build runs them.

- `views`: `views_from_manifest` (one `ImageView` per image: camera, registered pose, mask),
  `unmasked`;
- `association`: `point_table_from_reconstructions` (the `PointTable`), then the association stage
  `associate_clouds` (`clean_points`, `associate` per reference condition) -> `AssociatedPoints`;
- `surfaces`: `build_surfaces`, the visibility model of densification (`SurfaceModel`);
- `correspondences`: the correspondence stage `make_correspondences` -> `CorrespondenceTables`
  (pairs, matches, points3d);
- `splits`: `route_axis`, `assign_splits` (train / val / test by place).
"""
