SUMMARY = "container-lock demo: a multi-arch image, pinned, loaded into docker on first boot"
DESCRIPTION = "Packages demo/hello (tag and digest pinned) for the target's architecture."
LICENSE = "MIT"
MAINTAINER = "container-lock demo <demo@example.invalid>"

inherit docker-loader

CONTAINER_DELETE_AFTER_LOAD = "1"

# The demo's images are generated deterministically, so this digest is stable.
SRC_URI += "docker://${CONTAINER_DEMO_REGISTRY}/demo/hello;tag=1.0;digest=sha256:a27ab7f48f266d01f758b63c6cc69b000aac80e6357358d0ea59af1aaeff9008"
