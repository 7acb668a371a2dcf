# container-lock's global class (INHERITed by the layer; nothing to do in recipes).
#
# - CONTAINER_LOCKFILE: docker:// URLs without a digest get the locked digest in
#   SRC_URI at parse time (so do_fetch's signature follows the lock), and the
#   lockfile is a parse dependency.
# - MissingChecksumEvent: the digest a tag resolved to is recorded in the lock
#   when the build completes (not during it: the lock is a parse dependency).
# - BB_STRICT_CHECKSUM = "1": the build stops before any task if any docker://
#   URL that this build fetches lacks a tag or a digest, listing all of them.
# See docs/lock.md.

# The layer's Python library, on every BitBake release the layer supports:
# `addpylib` does not exist before bitbake 2.4 (Isar v0.10 has 2.0), so the
# library is put on sys.path here, while the configuration is parsed, in every
# BitBake process (cooker, parsers, workers), and the docker:// fetcher is
# registered ahead of any other `docker` fetcher.
def container_lock_import(d):
    import sys
    lib = os.path.join(d.getVar('LAYERDIR_container-lock'), 'lib')
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import containerlock.fetch.fetcher
    containerlock.fetch.fetcher.register()
    return lib

CONTAINER_LOCK_LIB := "${@container_lock_import(d)}"
CONTAINER_LOCK_LIB[vardepvalue] = ""

# The layer's code a task runs, for its [file-checksums]: the files of the modules its
# python body imports (and of `modules`, space-separated), with everything they import in
# turn (containerlock/build_hooks/task_code.py). A layer upgrade that changes any of them reruns the
# task, and sstate does not serve the old output; a module the task does not run changes
# nothing. Usage: TASK[file-checksums] += "${@container_lock_code_checksums(d, 'TASK')}"
def container_lock_code_checksums(d, task, modules=''):
    import containerlock.build_hooks.task_code
    code = (d.getVar(task, False) or '') if task and d.getVarFlag(task, 'python') else ''
    return containerlock.build_hooks.task_code.file_checksums(d.getVar('CONTAINER_LOCK_LIB'), code, modules.split())

# do_fetch and do_unpack run the docker:// fetcher (containerlock.fetch.fetcher, registered above)
# in recipes with docker:// URLs, and only there.
def container_lock_fetcher_checksums(d):
    if not any(u.startswith('docker://') for u in (d.getVar('SRC_URI') or '').split()):
        return ''
    return container_lock_code_checksums(d, None, 'containerlock.fetch.fetcher')

do_fetch[file-checksums] += "${@container_lock_fetcher_checksums(d)}"
do_unpack[file-checksums] += "${@container_lock_fetcher_checksums(d)}"

# Path of the lockfile (relative paths are relative to TOPDIR). Unset: no lock.
CONTAINER_LOCKFILE ??= ""

# Build manifests of loader packages go here; so does the SBOM of the images.
CONTAINER_LOCK_DEPLOY_DIR ?= "${DEPLOY_DIR}/container-lock"
# "1": at the end of a successful build, write ${CONTAINER_LOCK_SBOM_FILE} with
# the container-lock command (CONTAINER_LOCK_SBOM_CLI), when it is installed.
CONTAINER_LOCK_SBOM ?= "1"
CONTAINER_LOCK_SBOM_FILE ?= "${CONTAINER_LOCK_DEPLOY_DIR}/container-images.cdx.json"
CONTAINER_LOCK_SBOM_CLI ?= "container-lock"
# A vulnerability index (`container-lock vulndb import`): when set, that SBOM
# also lists the known vulnerabilities of the packages inside the images.
CONTAINER_LOCK_VULNDB ??= ""

python () {
    import containerlock.lock.recipe
    containerlock.lock.recipe.apply(d)
}

addhandler container_lock_record
container_lock_record[eventmask] = "bb.fetch2.MissingChecksumEvent"
python container_lock_record() {
    import containerlock.lock.recipe
    containerlock.lock.recipe.record_event(e, d)
}

# Fired once the build's task graph is known, before any task runs.
addhandler container_lock_strict
container_lock_strict[eventmask] = "bb.event.DepTreeGenerated"
python container_lock_strict() {
    import containerlock.lock.recipe
    containerlock.lock.recipe.check_strict(e.data, e._depgraph)
}

# At the end of the build: the digests it resolved into the lockfile, then the SBOM.
addhandler container_lock_sbom
container_lock_sbom[eventmask] = "bb.event.BuildCompleted"
python container_lock_sbom() {
    import containerlock.build_hooks.sbom
    import containerlock.lock.recipe
    containerlock.lock.recipe.write_recorded(d)
    containerlock.build_hooks.sbom.write_sbom(e, d)
}

# sstate: the payload of a loader recipe (do_install_fetched_containers) is needed only to
# build its .deb (do_dpkg_build) and its manifest (do_deploy_container_manifest). When both come
# from sstate, its own object is not restored (nor downloaded from SSTATE_MIRRORS): sstate's
# BB_SETSCENE_DEPVALID function would restore it (its default for tasks it does not know).
# Set once the whole configuration (with sstate's own setting) is parsed.
addhandler container_lock_setscene_config
container_lock_setscene_config[eventmask] = "bb.event.ConfigParsed"
python container_lock_setscene_config() {
    current = e.data.getVar('BB_SETSCENE_DEPVALID')
    if current and current != 'container_lock_setscene_depvalid':
        e.data.setVar('CONTAINER_LOCK_SETSCENE_DEPVALID_NEXT', current)
        e.data.setVar('BB_SETSCENE_DEPVALID', 'container_lock_setscene_depvalid')
}

def container_lock_setscene_depvalid(task, taskdependees, notneeded, d, log=None):
    pn, taskname = taskdependees[task][0], taskdependees[task][1]
    if taskname == 'do_install_fetched_containers' and all(
            dep == task or dep in notneeded
            or (taskdependees[dep][0] == pn and taskdependees[dep][1] in ('do_dpkg_build', 'do_deploy_container_manifest'))
            for dep in taskdependees):
        return True
    following = d.getVar('CONTAINER_LOCK_SETSCENE_DEPVALID_NEXT')
    return bb.utils.better_eval(following + '(task, taskdependees, notneeded, d, log)',
                                {'task': task, 'taskdependees': taskdependees, 'notneeded': notneeded,
                                 'd': d, 'log': log})
