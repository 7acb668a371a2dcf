"""What changed between two releases: images, the packages inside them, layers, vulnerabilities."""
