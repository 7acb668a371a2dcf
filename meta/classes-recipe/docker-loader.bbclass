# Load the recipe's container images into docker on the target.
inherit container-loader

CONTAINER_ENGINE = "docker"
# gzip layers load as fast as uncompressed ones when dockerd finds unpigz (docs/loader.md).
CONTAINER_ENGINE_PAYLOAD = "layers"
CONTAINER_LAYERS_PACKAGES ?= "pigz"

# Debian split the docker client out of docker.io after bookworm.
CONTAINER_DOCKER_PACKAGES ?= "docker-cli, docker.io"
CONTAINER_DOCKER_PACKAGES:buster = "docker.io"
CONTAINER_DOCKER_PACKAGES:bullseye = "docker.io"
CONTAINER_DOCKER_PACKAGES:bookworm = "docker.io"
CONTAINER_ENGINE_PACKAGES ?= "${CONTAINER_DOCKER_PACKAGES}, apparmor"
