"""CycloneDX SBOM of the container images embedded in a build (see docs/ and the SBOM issue)."""
