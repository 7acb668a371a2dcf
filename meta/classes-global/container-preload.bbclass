# CONTAINER_PRELOAD = "1" (an image recipe or local.conf): the image build writes the images
# of every loader package installed in the root file system into that engine's store inside it
# (podman: containers-storage with the graph root and driver of the image's storage.conf;
# docker: the data root with its storage driver), tagged as the loader tags them, with the
# loaders' record saying they are loaded: the first boot loads nothing. The archives do not
# stay in the root file system: a dpkg `path-exclude` drop-in keeps them out while the packages
# are installed (dpkg still lists them as the packages' files), the archives are read from the
# built .debs, and the drop-in is removed afterwards, so that a later `dpkg -i` of a new loader
# version on the device carries and loads its images. Isar image recipes only. See
# docs/loader.md, "Preloaded stores"; the code is containerlock/preload/.

CONTAINER_PRELOAD ??= "0"
# What was preloaded into which store, for the SBOM.
CONTAINER_PRELOAD_MANIFEST ?= "${CONTAINER_LOCK_DEPLOY_DIR}/preload/${PN}-${DISTRO}-${MACHINE}.json"

def container_preload_active(d):
    return d.getVar('CONTAINER_PRELOAD') == '1' and bb.data.inherits_class('image', d) \
        and bool(d.getVar('REPO_ISAR_DIR'))

ROOTFS_CONFIGURE_COMMAND:append = "${@' container_preload_exclude' if container_preload_active(d) else ''}"
ROOTFS_POSTPROCESS_COMMAND:append = "${@' container_preload_write' if container_preload_active(d) else ''}"

python () {
    if d.getVar('CONTAINER_PRELOAD') == '1' and bb.data.inherits_class('image', d) and not d.getVar('REPO_ISAR_DIR'):
        bb.fatal(f"{d.getVar('PN')}: CONTAINER_PRELOAD = \"1\" is for Isar images (no REPO_ISAR_DIR here); unset it")
    if container_preload_active(d):
        # The preload code is part of the rootfs tasks' signatures.
        code = container_lock_code_checksums(d, None, 'containerlock.preload.__main__')
        d.appendVarFlag('do_rootfs_install', 'file-checksums', ' ' + code)
        d.appendVarFlag('do_rootfs_postprocess', 'file-checksums', ' ' + code)
}

# Before the packages are installed: the drop-in names the archive directory of every loader
# package among the built .debs (isar-apt).
container_preload_exclude() {
    sudo env PYTHONPATH='${CONTAINER_LOCK_LIB}' python3 -m containerlock.preload exclude \
        '${ROOTFSDIR}' '${REPO_ISAR_DIR}/${DISTRO}'
}

# After: the stores and the record, the drop-in removed; the manifest for the SBOM.
container_preload_write() {
    work='${WORKDIR}/container-preload'
    sudo rm -rf "$work"
    mkdir -p "$work" '${CONTAINER_LOCK_DEPLOY_DIR}/preload'
    sudo env PYTHONPATH='${CONTAINER_LOCK_LIB}' SOURCE_DATE_EPOCH='${SOURCE_DATE_EPOCH}' \
        python3 -m containerlock.preload write '${ROOTFSDIR}' '${REPO_ISAR_DIR}/${DISTRO}' "$work/run" '${PN}' \
        > "$work/manifest.json"
    sudo rm -rf "$work/run"
    mv -f "$work/manifest.json" '${CONTAINER_PRELOAD_MANIFEST}'
    bbnote "container-preload: $(grep -c '"reference"' '${CONTAINER_PRELOAD_MANIFEST}') image reference(s) preloaded"
}
do_rootfs_postprocess[vardeps] += "CONTAINER_PRELOAD CONTAINER_PRELOAD_MANIFEST"
do_rootfs_install[vardeps] += "CONTAINER_PRELOAD"
