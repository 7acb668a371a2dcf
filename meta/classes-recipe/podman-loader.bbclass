# Load the recipe's container images into podman on the target.
inherit container-loader

CONTAINER_ENGINE = "podman"
CONTAINER_ENGINE_PACKAGES ?= "podman"
