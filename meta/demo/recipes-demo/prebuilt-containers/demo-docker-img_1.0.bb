SUMMARY = "container-lock demo: pinned multi-arch image for docker"
DESCRIPTION = "Packages the demo/hello image, pinned by tag and digest, for the target architecture; the docker loader loads it on first boot."
HOMEPAGE = "https://example.invalid/container-lock"
SECTION = "admin"
LICENSE = "MIT"
MAINTAINER = "container-lock demo <demo@example.invalid>"

inherit docker-loader

CONTAINER_DELETE_AFTER_LOAD = "1"

# The demo's images are generated deterministically, so this digest is stable.
SRC_URI += "docker://${CONTAINER_DEMO_REGISTRY}/demo/hello;tag=1.0;digest=sha256:a27ab7f48f266d01f758b63c6cc69b000aac80e6357358d0ea59af1aaeff9008"
