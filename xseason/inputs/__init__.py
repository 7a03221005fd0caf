"""What a build reads: the image manifest, and public datasets' layouts turned into manifests.

Modules: `manifest` (`read_manifest(path) -> Manifest`, `write_manifest`; docs/FORMAT.md §2),
`layouts` (one reader per dataset layout, `write_layout_manifest`), `layouts.registry`
(`LAYOUTS`, `add_layout_arguments`, `manifest_from_layout`: the layouts of `xseason manifest`
and pipelines/).
"""

from xseason.inputs.manifest import ImageRecord, Manifest, read_manifest, write_manifest

__all__ = ["ImageRecord", "Manifest", "read_manifest", "write_manifest"]
