# Minimal base class: fetch and unpack through bb.fetch2, like Isar's and OE's.

python do_fetch() {
    src_uri = (d.getVar('SRC_URI') or "").split()
    if src_uri:
        bb.fetch2.Fetch(src_uri, d).download()
}
do_fetch[dirs] = "${DL_DIR}"
do_fetch[network] = "1"
addtask fetch

python do_unpack() {
    src_uri = (d.getVar('SRC_URI') or "").split()
    if src_uri:
        bb.fetch2.Fetch(src_uri, d).unpack(d.getVar('WORKDIR'))
}
do_unpack[dirs] = "${WORKDIR}"
addtask unpack after do_fetch

do_build() {
    :
}
addtask build after do_unpack
