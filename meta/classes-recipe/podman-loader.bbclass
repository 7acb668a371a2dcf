# Load the recipe's container images into podman on the target.
inherit container-loader

CONTAINER_ENGINE = "podman"
CONTAINER_ENGINE_SERVICE ?= ""
# zstd and podman's own work keep both CPUs of a small device busy with one load: two at a
# time was not faster (docs/loader.md)
CONTAINER_LOADER_JOBS ?= "1"
# podman gunzips layers in-process, markedly slower than loading a recompressed
# archive (docs/loader.md): recompress (zstd) by default.
CONTAINER_ENGINE_PAYLOAD = "recompress"
CONTAINER_ENGINE_PACKAGES ?= "podman"
