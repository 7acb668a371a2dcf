# Load the recipe's container images into docker on the target.
inherit container-loader

CONTAINER_ENGINE = "docker"
CONTAINER_ENGINE_PACKAGES ?= "docker.io, apparmor"
