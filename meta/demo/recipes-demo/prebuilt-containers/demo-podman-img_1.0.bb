SUMMARY = "container-lock demo: unpinned image for podman"
DESCRIPTION = "Packages the demo/tool image by tag only, so the build warns and prints the digest to pin; the podman loader loads it on first boot."
HOMEPAGE = "https://example.invalid/container-lock"
SECTION = "admin"
LICENSE = "MIT"
MAINTAINER = "container-lock demo <demo@example.invalid>"

inherit podman-loader

SRC_URI += "docker://${CONTAINER_DEMO_REGISTRY}/demo/tool;tag=2.1"
