SUMMARY = "container-lock demo: an unpinned image, loaded into podman on first boot"
DESCRIPTION = "Packages demo/tool by tag only: the build warns and prints the digest to pin."
LICENSE = "MIT"
MAINTAINER = "container-lock demo <demo@example.invalid>"

inherit podman-loader

SRC_URI += "docker://${CONTAINER_DEMO_REGISTRY}/demo/tool;tag=2.1"
