"""Known vulnerabilities of the packages inside the embedded images, from a pinned offline OSV snapshot."""
