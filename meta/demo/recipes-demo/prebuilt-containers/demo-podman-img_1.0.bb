SUMMARY = "container-lock demo: unpinned images for podman, one run as a service"
DESCRIPTION = "Packages the demo/tool and demo/web images by tag only, so the build warns and prints the digests to pin; the podman loader loads them on first boot and the web service (busybox httpd in demo/web) starts after it."
HOMEPAGE = "https://example.invalid/container-lock"
SECTION = "admin"
LICENSE = "MIT"
MAINTAINER = "container-lock demo <demo@example.invalid>"

inherit podman-loader

SRC_URI += "docker://${CONTAINER_DEMO_REGISTRY}/demo/tool;tag=2.1 \
            docker://${CONTAINER_DEMO_REGISTRY}/demo/web;tag=1.0 \
            "

# The device runs demo/web from first boot on: a unit (web.service) that starts the pinned image
# ID after the loader; on the host's network, so the service answers on the device's loopback.
CONTAINER_SERVICES = "web"
CONTAINER_SERVICE_IMAGE[web] = "${CONTAINER_DEMO_REGISTRY}/demo/web:1.0"
CONTAINER_SERVICE_ARGS[web] = "--network host"
