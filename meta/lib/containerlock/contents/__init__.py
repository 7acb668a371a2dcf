"""Image contents: the packages inside an image, each with the layer that brought it.

Used by do_container_inventory and the CLI's inventory and SBOM: the layers stacked in order
with whiteouts, and the package databases read from their bytes. Standard library and the
`zstd` host tool only.
"""
