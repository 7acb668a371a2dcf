# Load the recipe's container images into podman on the target.
inherit container-loader

CONTAINER_ENGINE = "podman"
CONTAINER_ENGINE_SERVICE ?= ""
# podman gunzips layers in-process, markedly slower than loading a recompressed
# archive (docs/loader.md): recompress (zstd) by default.
CONTAINER_ENGINE_PAYLOAD = "recompress"
CONTAINER_ENGINE_PACKAGES ?= "podman"
