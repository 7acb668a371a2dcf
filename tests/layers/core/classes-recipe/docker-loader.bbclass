# Decoy for the core layer's own docker-loader class (Isar ships one): the tests fail
# if it is ever inherited instead of container-lock's.
python () {
    bb.fatal("the core layer's docker-loader.bbclass was used instead of container-lock's")
}
