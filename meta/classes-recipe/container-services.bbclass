# Containers started by the OS (inherited by container-loader): each name in CONTAINER_SERVICES
# becomes a systemd unit of the loader package that runs CONTAINER_SERVICE_IMAGE[name] by its
# pinned image ID, after the engine and the package's loader unit. See docs/loader.md, "Services".
#
#   CONTAINER_SERVICES = "web"
#   CONTAINER_SERVICE_IMAGE[web] = "registry.example/team/web:1.4"   (one of the docker:// URLs)
#   CONTAINER_SERVICE_ARGS[web] = "-p 8080:80 -v /srv/web:/data"      (engine run options)
#   CONTAINER_SERVICE_RESTART[web] = "always"                         (always | on-failure | no)

CONTAINER_SERVICES ?= ""
# podman: a Quadlet .container ("1") or a unit running `podman run` ("0"); "auto": Quadlet
# unless the release's podman predates it (< 4.4: bookworm and older).
CONTAINER_PODMAN_QUADLET ?= "auto"
CONTAINER_SERVICES_RELEASE ?= "${@d.getVar('BASE_DISTRO_CODENAME') or d.getVar('DISTRO_CODENAME') or ''}"
CONTAINER_SERVICES_STAGE = "${WORKDIR}/container-services"

# Checked at parse time: a bad declaration stops the parse naming the recipe and the service.
python () {
    import containerlock.services as services
    urls = [u for u in (d.getVar('SRC_URI') or '').split() if u.startswith('docker://')]
    try:
        declared = services.declared(d.getVar('CONTAINER_SERVICES') or '', d.getVarFlag, urls,
                                     d.getVar('BPN') + '.service')
        quadlet = services.use_quadlet(d.getVar('CONTAINER_PODMAN_QUADLET'), d.getVar('CONTAINER_ENGINE'),
                                       d.getVar('CONTAINER_SERVICES_RELEASE') or '')
    except services.ServiceError as err:
        bb.fatal(f"{d.getVar('FILE')} ({d.getVar('PN')}): {err}")
    d.setVar('CONTAINER_SERVICES_SPEC', services.spec(declared, quadlet) if declared else '')
}

python do_container_services() {
    import json
    from pathlib import Path
    import containerlock.services as services

    root = Path(d.getVar('D'))
    record = Path(d.getVar('CONTAINER_SERVICES_STAGE')) / 'units'
    # The units an earlier run wrote (a service renamed or dropped since) go first.
    previous = record.read_text().split() if record.is_file() else []
    for rel in previous:
        (root / rel).unlink(missing_ok=True)
    for stale in (record, *(record.with_name(n) for n in ('postinst', 'prerm', 'postrm'))):
        stale.unlink(missing_ok=True)
    spec = d.getVar('CONTAINER_SERVICES_SPEC')
    if not spec:
        return
    declared, quadlet = services.from_spec(spec)
    manifest = json.loads((Path(d.getVar('WORKDIR')) / 'container-lock-manifest.json').read_text())
    ctx = services.UnitContext(d.getVar('BPN'), d.getVar('CONTAINER_ENGINE'),
                               d.getVar('CONTAINER_ENGINE_SERVICE') or '', quadlet)
    try:
        files = services.unit_files(declared, ctx, services.image_ids(manifest))
    except services.ServiceError as err:
        bb.fatal(f"{d.getVar('PN')}: {err}")
    written = services.write_units(files, root)
    stage = record.parent
    stage.mkdir(parents=True, exist_ok=True)
    # debhelper compat >= 10 (Isar's default) enables and restarts the plain units itself
    compat = (d.getVar('DEBIAN_COMPAT') or '').strip()
    debhelper_units = compat.isdigit() and int(compat) >= 10
    for name, lines in (('postinst', services.postinst(declared, ctx, debhelper_units)),
                        ('prerm', services.prerm(declared, ctx)), ('postrm', services.postrm(declared, ctx))):
        (stage / name).write_text('\n'.join(lines) + '\n' if lines else '')
    record.write_text('\n'.join(written) + '\n')
    for rel in written:
        bb.note(f"service unit /{rel}")
}
do_container_services[vardeps] += "CONTAINER_SERVICES_SPEC CONTAINER_ENGINE_SERVICE DEBIAN_COMPAT"
do_container_services[file-checksums] += "${@container_lock_code_checksums(d, 'do_container_services')}"
addtask container_services after do_install_fetched_containers before do_prepare_build

# The maintainer scripts: services enabled and (re)started after the loader on install and
# update; stopped before the loader releases the images on removal; forgotten by systemd after
# removal (postrm). This class is inherited at the end of container-loader, so this runs after
# the loader's own do_prepare_build:append (which writes the prerm); do_container_services
# staged the lines.
do_prepare_build:append() {
    container_services_scripts
}

container_services_scripts() {
    stage=${CONTAINER_SERVICES_STAGE}
    [ -s $stage/prerm ] || return 0
    if [ ! -s $stage/postinst ]; then
        :  # debhelper's own lines enable and restart the plain units
    elif [ -e ${S}/debian/postinst ] || [ -e ${S}/debian/${BPN}.postinst ]; then
        bbwarn "${PN}: the recipe has its own postinst: start the services from it after #DEBHELPER# ($stage/postinst)"
    else
        { printf '%s\n' '#!/bin/sh' 'set -e' '#DEBHELPER#'; cat $stage/postinst; echo 'exit 0'; } \
            > ${S}/debian/${BPN}.postinst
    fi
    if [ -e ${S}/debian/postrm ] || [ -e ${S}/debian/${BPN}.postrm ]; then
        bbwarn "${PN}: the recipe has its own postrm: add the services' lines to it ($stage/postrm)"
    else
        { printf '%s\n' '#!/bin/sh' 'set -e'; cat $stage/postrm; echo '#DEBHELPER#'; echo 'exit 0'; } \
            > ${S}/debian/${BPN}.postrm
    fi
    prerm=${S}/debian/${BPN}.prerm
    if [ ! -e ${S}/debian/prerm ] && [ -e $prerm ] && grep -q 'container-loader.sh --release' $prerm; then
        sed -i "2r $stage/prerm" $prerm  # after '#!/bin/sh' and 'set -e': before the release
    else
        bbwarn "${PN}: the recipe has its own prerm: stop the services from it on removal ($stage/prerm)"
    fi
}
