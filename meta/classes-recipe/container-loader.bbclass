# Package the container images of a recipe's docker:// URLs for loading on
# the target (Isar: a .deb with a systemd oneshot loader).
#
# Recipe API (compatible with upstream Isar):
#   SRC_URI += "docker://host[:port]/path;tag=…;digest=sha256:…"
#   CONTAINER_DELETE_AFTER_LOAD, CONTAINER_ENGINE_PACKAGES
# The engine is chosen by inheriting docker-loader or podman-loader.
# See docs/loader.md.

inherit dpkg-raw

CONTAINER_ENGINE ??= "docker"
# The engine's daemon the loader unit starts after and requires (docker-loader: docker.service);
# empty for podman-loader: podman has no daemon, and requiring podman.service (the REST API)
# started an API server beside every first-boot load.
CONTAINER_ENGINE_SERVICE ??= "${CONTAINER_ENGINE}.service"
CONTAINER_ENGINE_PACKAGES ??= ""
CONTAINER_DELETE_AFTER_LOAD ?= "0"
# On the device: images the loaders loaded and no installed loader package lists any more
# (an update replaced them, a package was removed) are removed, unless a container uses them;
# "0" keeps everything. The record of what was loaded lives in CONTAINER_LOADER_STATE_DIR,
# which must be on the same persistent partition as the engine's store (docs/loader.md).
CONTAINER_LOADER_PRUNE ?= "1"
CONTAINER_LOADER_STATE_DIR ?= "/var/lib/container-loader"
# How many images the loader loads at a time on the device (the engines accept concurrent
# loads). docker-loader: 2, faster than one at a time on the 2-vCPU test VM; podman-loader: 1,
# where two at a time was not faster (docs/loader.md, "First-boot time").
CONTAINER_LOADER_JOBS ??= "2"
# podman-loader: read podman's store file (images.json) instead of starting podman to list the
# store and to verify the loads, when the loader can be sure which file podman uses; "0" always
# asks podman (for a podman whose store is not the one storage.conf names). docs/loader.md.
CONTAINER_LOADER_READ_STORE ?= "1"

# layers: each image as a docker-archive of its layer blobs as fetched (no decompression,
# no recompression); recompress: uncompressed layers, the archive compressed as a whole
# with CONTAINER_COMPRESSION. The default is the kind the engine loads fastest, set by
# docker-loader (layers) and podman-loader (recompress); see docs/loader.md for the figures.
CONTAINER_ENGINE_PAYLOAD ??= "layers"
CONTAINER_PAYLOAD ?= "${CONTAINER_ENGINE_PAYLOAD}"
# Target packages that make the engine load a layers payload fast (docker-loader: pigz,
# which dockerd runs to gunzip layers instead of Go's slower gzip).
CONTAINER_LAYERS_PACKAGES ??= ""
# For recompress: zst (default) | xz | gz | none. Levels: Isar writes "-3", OE "3"; both work.
CONTAINER_COMPRESSION ?= "zst"
CONTAINER_ZSTD_LEVEL ?= "${@d.getVar('ZSTD_COMPRESSION_LEVEL') or '3'}"
CONTAINER_XZ_LEVEL ?= "${@d.getVar('XZ_COMPRESSION_LEVEL') or '6'}"
CONTAINER_GZIP_LEVEL ?= "6"
# Threads never change the output bytes, so they never change a signature.
CONTAINER_COMPRESSION_THREADS ?= "${@d.getVar('ZSTD_THREADS') or str(os.cpu_count() or 1)}"
CONTAINER_COMPRESSION_THREADS[vardepvalue] = "1"

# Where do_unpack put files: UNPACKDIR on current OE, WORKDIR on Isar.
CONTAINER_UNPACK_ROOT ?= "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"

# The images are built for the target architecture; the package may be
# installed next to the same package of another architecture.
DPKG_ARCH ?= "${DISTRO_ARCH}"
DEBIAN_MULTI_ARCH ?= "allowed"

FILESPATH:append = ":${LAYERDIR_container-lock}/files/container-loader"
SRC_URI += "file://container-loader.sh.in file://container-loader.service.in"

# Runtime dependencies: the engine and the decompressor the loader or the engine calls,
# merged into whatever DEBIAN_DEPENDS the recipe sets (a comma-separated list).
python () {
    import containerlock.payload.archive as pkg
    kind = (d.getVar('CONTAINER_COMPRESSION') or 'zst').strip()
    payload = (d.getVar('CONTAINER_PAYLOAD') or 'layers').strip()
    if d.getVar('CONTAINER_COMPRESSION_LEVEL') is None:
        level_var = {'zst': 'CONTAINER_ZSTD_LEVEL', 'xz': 'CONTAINER_XZ_LEVEL', 'gz': 'CONTAINER_GZIP_LEVEL'}.get(kind)
        d.setVar('CONTAINER_COMPRESSION_LEVEL', (d.getVar(level_var) or '') if level_var else '0')
    # The packaging signature gets only what changes the bytes: "layers", or
    # "recompress <algorithm> <its level>" (other algorithms' levels do not count).
    d.setVar('CONTAINER_PAYLOAD_SPEC', f"{payload} {kind} {d.getVar('CONTAINER_COMPRESSION_LEVEL')}"
             if payload == 'recompress' else payload)
    wanted = (d.getVar('CONTAINER_ENGINE_PACKAGES') or '').split(',')
    if payload == 'recompress':
        wanted.append(pkg.DECOMPRESSOR_PACKAGES.get(kind, ''))
    else:
        wanted += (d.getVar('CONTAINER_LAYERS_PACKAGES') or '').split(',')
    depends = [p.strip() for p in (d.getVar('DEBIAN_DEPENDS') or '').split(',') if p.strip()]
    depends += [p.strip() for p in wanted if p.strip() and p.strip() not in depends]
    d.setVar('DEBIAN_DEPENDS', ', '.join(depends))
}

do_install() {
    install -d ${D}/usr/share/${BPN}/images
    sed -e 's|@BPN@|${BPN}|g' \
        -e 's|@CONTAINER_ENGINE@|${CONTAINER_ENGINE}|g' \
        -e 's|@CONTAINER_DELETE_AFTER_LOAD@|${CONTAINER_DELETE_AFTER_LOAD}|g' \
        -e 's|@CONTAINER_LOADER_PRUNE@|${CONTAINER_LOADER_PRUNE}|g' \
        -e 's|@CONTAINER_LOADER_JOBS@|${CONTAINER_LOADER_JOBS}|g' \
        -e 's|@CONTAINER_LOADER_READ_STORE@|${CONTAINER_LOADER_READ_STORE}|g' \
        -e 's|@CONTAINER_LOADER_STATE_DIR@|${CONTAINER_LOADER_STATE_DIR}|g' \
        ${CONTAINER_UNPACK_ROOT}/container-loader.sh.in > ${D}/usr/share/${BPN}/container-loader.sh
    chmod 755 ${D}/usr/share/${BPN}/container-loader.sh
    # The installed loader packages of an engine, for pruning: each links its image.list here.
    install -d ${D}/usr/share/container-loader/${CONTAINER_ENGINE}.d
    ln -sf ../../${BPN}/image.list ${D}/usr/share/container-loader/${CONTAINER_ENGINE}.d/${BPN}.list
    if [ -n "${CONTAINER_ENGINE_SERVICE}" ]; then
        engine_unit='s|@CONTAINER_ENGINE_SERVICE@|${CONTAINER_ENGINE_SERVICE}|g'
    else
        engine_unit='/@CONTAINER_ENGINE_SERVICE@/d'
    fi
    sed -e 's|@BPN@|${BPN}|g' -e 's|@CONTAINER_ENGINE@|${CONTAINER_ENGINE}|g' -e "$engine_unit" \
        -e 's|@CONTAINER_LOADER_STATE_DIR@|${CONTAINER_LOADER_STATE_DIR}|g' \
        ${CONTAINER_UNPACK_ROOT}/container-loader.service.in > ${WORKDIR}/container-loader.service
}

# Shared state (sstate, SSTATE_MIRRORS) of the loader's own tasks, so that a build whose
# .deb comes from sstate needs neither the images nor the registry (docs/mirrors.md,
# "Build farms"). Each task writes into a staging directory of its own under ${WORKDIR};
# sstate packs it and installs it where the next task reads it:
# - do_install_fetched_containers: the payload (usr/share/${BPN}/images, image.list) into
#   ${D}, the build manifest (with the inventory) into ${WORKDIR};
# - do_deploy_container_manifest: ${PN}.json into ${CONTAINER_LOCK_DEPLOY_DIR}, which the
#   end-of-build SBOM reads.
# With every sstate task of a recipe matched, nothing of it is fetched or packaged; with hash
# equivalence (BB_HASHSERVE), a payload of the same bytes lets the .deb be reused.
CONTAINER_PAYLOAD_STAGE = "${WORKDIR}/container-payload"
CONTAINER_MANIFEST_STAGE = "${WORKDIR}/container-lock-manifest-stage"
CONTAINER_DEPLOY_STAGE = "${WORKDIR}/container-lock-deploy"
SSTATETASKS += "do_install_fetched_containers do_deploy_container_manifest"
# Isar's dpkg-base adds the recipe's .deb to *every* sstate object of the recipe and moves it
# back into ${WORKDIR} when one is installed: in these two tasks' objects it would be a copy
# of an older .deb (restored over the current one) and would make their output hashes differ
# by whether a .deb happened to be there.
SSTATECREATEFUNCS:remove:task-install-fetched-containers = "dpkg_build_sstate_prepare"
SSTATEPOSTINSTFUNCS:remove:task-install-fetched-containers = "dpkg_build_sstate_finalize"
SSTATEPOSTINSTFUNCS:remove:task-install-fetched-containers-setscene = "dpkg_build_sstate_finalize"
SSTATECREATEFUNCS:remove:task-deploy-container-manifest = "dpkg_build_sstate_prepare"
SSTATEPOSTINSTFUNCS:remove:task-deploy-container-manifest = "dpkg_build_sstate_finalize"
SSTATEPOSTINSTFUNCS:remove:task-deploy-container-manifest-setscene = "dpkg_build_sstate_finalize"

python do_install_fetched_containers() {
    from pathlib import Path
    import containerlock.payload.archive as pkg
    from containerlock.oci import layout
    from containerlock.oci.reference import parse_url

    urls = [u for u in (d.getVar('SRC_URI') or '').split() if u.startswith('docker://')]
    unpack_root = Path(d.getVar('CONTAINER_UNPACK_ROOT')) / layout.UNPACK_DIR
    # What an older build left outside of sstate's records would clash with sstate's install.
    (Path(d.getVar('D')) / 'usr' / 'share' / d.getVar('BPN') / 'image.list').unlink(missing_ok=True)
    (Path(d.getVar('WORKDIR')) / 'container-lock-manifest.json').unlink(missing_ok=True)
    try:
        payload = pkg.payload_from_spec(d.getVar('CONTAINER_PAYLOAD_SPEC'), d.getVar('CONTAINER_COMPRESSION_THREADS'))
        images = [pkg.load_unpacked(unpack_root / layout.dirname(parse_url(u))) for u in urls]
        settings = pkg.PayloadSettings(
            d.getVar('PN'), d.getVar('BPN'), d.getVar('CONTAINER_ENGINE'), payload,
            version=d.getVar('CHANGELOG_V') or d.getVar('PV'), arch=d.getVar('DPKG_ARCH'),
            source_date_epoch=int(d.getVar('SOURCE_DATE_EPOCH') or 0))
        inventories = pkg.read_inventories(Path(d.getVar('WORKDIR')) / 'container-inventory.json')
        manifest = pkg.install_payload(images, Path(d.getVar('CONTAINER_PAYLOAD_STAGE')),
                                       Path(d.getVar('WORKDIR')) / 'container-lock-tmp', settings, inventories)
    except pkg.PackagingError as err:
        bb.fatal(f"{d.getVar('PN')}: {err}")
    pkg.write_manifest(manifest, Path(d.getVar('CONTAINER_MANIFEST_STAGE')) / 'container-lock-manifest.json')
    for image in manifest['images']:
        bb.note(f"packaged {image['reference']}:{image['tag']} ({image['platform']}) as {image['file']}")
    container_loader_install_staged(d, 'do_install_fetched_containers')
}
do_install_fetched_containers[cleandirs] = "${CONTAINER_PAYLOAD_STAGE} ${CONTAINER_MANIFEST_STAGE} \
    ${D}/usr/share/${BPN}/images ${WORKDIR}/container-lock-tmp"
do_install_fetched_containers[sstate-inputdirs] = "${CONTAINER_PAYLOAD_STAGE} ${CONTAINER_MANIFEST_STAGE}"
do_install_fetched_containers[sstate-outputdirs] = "${D} ${WORKDIR}"
do_install_fetched_containers[vardeps] += "CONTAINER_INVENTORY"
# The packaging code is part of the task: a layer whose modules the task runs (the import
# closure of what it imports) changed repackages.
do_install_fetched_containers[file-checksums] += "${@container_lock_code_checksums(d, 'do_install_fetched_containers')}"
addtask install_fetched_containers after do_install before do_prepare_build

python do_install_fetched_containers_setscene() {
    sstate_setscene(d)
}
addtask do_install_fetched_containers_setscene

# do_install cleans ${D} (dpkg-raw's [cleandirs]), but it may run after the payload was
# restored from sstate into it (a .deb to rebuild, the payload's own sstate matched): it
# keeps what do_install_fetched_containers owns and removes everything else.
do_install[cleandirs] = ""
do_install[prefuncs] += "container_loader_clean_install_dir"
python container_loader_clean_install_dir() {
    import shutil
    from pathlib import Path
    root = Path(d.getVar('D'))
    share = root / 'usr' / 'share' / d.getVar('BPN')
    keep = {share / 'images', share / 'image.list'}
    def clean(path):
        for entry in path.iterdir() if path.is_dir() and not path.is_symlink() else ():
            if entry in keep:
                continue
            if any(k.is_relative_to(entry) for k in keep) and entry.is_dir() and not entry.is_symlink():
                clean(entry)
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    clean(root)
    root.mkdir(parents=True, exist_ok=True)
}

# "1": list the packages inside each image (dpkg, apk, rpm, Python, os-release) for
# the SBOM, read from the unpacked layers. Its signature depends on the images'
# digests only: compression settings do not rerun it.
CONTAINER_INVENTORY ?= "1"
# Pinned URLs by their digest; an unpinned one (resolved at fetch time) by its whole URL.
CONTAINER_IMAGE_DIGESTS = "${@' '.join(sorted(u.partition(';digest=')[2].split(';')[0] or u for u in (d.getVar('SRC_URI') or '').split() if u.startswith('docker://')))}"
python do_container_inventory() {
    import json
    from pathlib import Path
    from containerlock.contents import inventory
    from containerlock.oci import layout
    from containerlock.files import atomic_write
    from containerlock.oci.reference import parse_url

    out = Path(d.getVar('WORKDIR')) / 'container-inventory.json'
    if d.getVar('CONTAINER_INVENTORY') != '1':
        out.unlink(missing_ok=True)
        return
    root = Path(d.getVar('CONTAINER_UNPACK_ROOT')) / layout.UNPACK_DIR
    found = {}
    for url in (d.getVar('SRC_URI') or '').split():
        if not url.startswith('docker://'):
            continue
        path = root / layout.dirname(parse_url(url))
        facts = layout.read_facts(path)
        blobs = [(b.digest, path / 'blobs' / 'sha256' / b.digest.split(':', 1)[1]) for b in facts.layers or ()]
        try:
            result = inventory.of_layers(blobs, facts.tagged)
        except inventory.InventoryError as err:
            bb.fatal(f"{d.getVar('PN')}: {err}")
        found[path.name] = result.to_json()
        bb.note(f"{facts.tagged} ({facts.platform}): {len(result.packages)} packages, "
                f"{result.os.get('PRETTY_NAME', 'no os-release')}")
        for note in result.notes:
            bb.warn(f"{facts.tagged}: {note}")
    atomic_write(out, (json.dumps(found, sort_keys=True, indent=2) + '\n').encode())
}
do_container_inventory[vardeps] = "CONTAINER_IMAGE_DIGESTS CONTAINER_INVENTORY"
do_container_inventory[vardepsexclude] = "SRC_URI"
do_container_inventory[file-checksums] += "${@container_lock_code_checksums(d, 'do_container_inventory')}"
addtask container_inventory after do_unpack before do_install_fetched_containers

python do_deploy_container_manifest() {
    import os
    import shutil
    name = d.getVar('PN') + '.json'
    # A manifest an older build deployed outside of sstate's records would clash with it.
    if os.path.isfile(os.path.join(d.getVar('CONTAINER_LOCK_DEPLOY_DIR'), name)):
        os.unlink(os.path.join(d.getVar('CONTAINER_LOCK_DEPLOY_DIR'), name))
    shutil.copyfile(d.getVar('WORKDIR') + '/container-lock-manifest.json',
                    os.path.join(d.getVar('CONTAINER_DEPLOY_STAGE'), name))
    container_loader_install_staged(d, 'do_deploy_container_manifest')
}
do_deploy_container_manifest[dirs] = "${CONTAINER_DEPLOY_STAGE}"
do_deploy_container_manifest[cleandirs] = "${CONTAINER_DEPLOY_STAGE}"
do_deploy_container_manifest[sstate-inputdirs] = "${CONTAINER_DEPLOY_STAGE}"
do_deploy_container_manifest[sstate-outputdirs] = "${CONTAINER_LOCK_DEPLOY_DIR}"
addtask deploy_container_manifest after do_install_fetched_containers before do_build

python do_deploy_container_manifest_setscene() {
    sstate_setscene(d)
}
addtask do_deploy_container_manifest_setscene

# Without sstate (a BitBake setup that does not inherit it), a task installs its staged
# outputs itself where sstate would put them.
def container_loader_install_staged(d, task):
    import os
    import shutil
    if bb.data.inherits_class('sstate', d):
        return
    pairs = zip((d.getVarFlag(task, 'sstate-inputdirs') or '').split(),
                (d.getVarFlag(task, 'sstate-outputdirs') or '').split())
    for source, dest in pairs:
        for top, _, files in os.walk(source):
            target = os.path.join(dest, os.path.relpath(top, source))
            os.makedirs(target, exist_ok=True)
            for name in files:
                if os.path.lexists(os.path.join(target, name)):
                    os.unlink(os.path.join(target, name))
                try:
                    os.link(os.path.join(top, name), os.path.join(target, name))
                except OSError:
                    shutil.copy2(os.path.join(top, name), os.path.join(target, name))

do_prepare_build:append() {
    install -m 644 ${WORKDIR}/container-loader.service ${S}/debian/${BPN}.service
    # Removal releases the package's images (those no other package lists), while the engine runs.
    if [ -e ${S}/debian/prerm ] || [ -e ${S}/debian/${BPN}.prerm ]; then
        bbwarn "${PN}: the recipe has its own prerm: its images are released by the next loader run instead"
    else
        printf '%s\n' '#!/bin/sh' 'set -e' \
            'if [ "$1" = remove ]; then /usr/share/${BPN}/container-loader.sh --release || true; fi' \
            '#DEBHELPER#' > ${S}/debian/${BPN}.prerm
    fi
    # The payload is compressed already: build the .deb without compression.
    cat <<EOF >> ${S}/debian/rules

override_dh_builddeb:
	dh_builddeb -- -Znone
EOF
}

# CONTAINER_SERVICES: containers the OS starts from the loaded images (docs/loader.md, "Services").
# Last: its do_prepare_build:append runs after the one above.
inherit container-services
