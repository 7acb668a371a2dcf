# Test stand-in for Isar's dpkg-raw: ${D} becomes a .deb (dpkg-deb instead of sbuild).
# Mirrors what the loader classes rely on: D, DEBIAN_DEPENDS, DPKG_ARCH,
# do_install → do_prepare_build (debian/) → do_dpkg_build, and debhelper's
# reading of `dh_builddeb -- -Z…` in debian/rules.

D = "${S}/image"
DPKG_ARCH ??= "all"
DEBIAN_DEPENDS ?= ""
MAINTAINER ?= "container-lock tests <tests@example.invalid>"

do_install() {
    :
}
do_install[cleandirs] = "${D}"
addtask install after do_unpack

do_prepare_build() {
    cat > ${S}/debian/control <<EOF
Package: ${PN}
Version: ${PV}
Architecture: ${DPKG_ARCH}
Maintainer: ${MAINTAINER}
Depends: ${DEBIAN_DEPENDS}
Description: ${PN}
EOF
    printf '#!/usr/bin/make -f\n%%:\n\tdh $@\n' > ${S}/debian/rules
}
do_prepare_build[cleandirs] = "${S}/debian"
addtask prepare_build after do_install

do_dpkg_build() {
    rm -rf ${WORKDIR}/debroot
    cp -a ${D} ${WORKDIR}/debroot
    mkdir -p ${WORKDIR}/debroot/DEBIAN
    sed '/^Depends: *$/d' ${S}/debian/control > ${WORKDIR}/debroot/DEBIAN/control
    if [ -f ${S}/debian/${PN}.service ]; then
        install -D -m 644 ${S}/debian/${PN}.service ${WORKDIR}/debroot/lib/systemd/system/${PN}.service
    fi
    # Maintainer scripts as debhelper leaves them (its own snippets are not generated here).
    for script in postinst prerm postrm; do
        if [ -f ${S}/debian/${PN}.$script ]; then
            sed '/^#DEBHELPER#$/d' ${S}/debian/${PN}.$script > ${WORKDIR}/debroot/DEBIAN/$script
            chmod 755 ${WORKDIR}/debroot/DEBIAN/$script
        fi
    done
    compression=xz
    if grep -q -- 'dh_builddeb -- -Znone' ${S}/debian/rules; then
        compression=none
    fi
    dpkg-deb --root-owner-group -Z$compression --build ${WORKDIR}/debroot ${WORKDIR}/${PN}_${PV}_${DPKG_ARCH}.deb
}
addtask dpkg_build after do_prepare_build before do_build
