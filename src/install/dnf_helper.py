# ostree-composer: depsolve, download and install through the dnf 4 Python API.
#
# Embedded into the Rust binary (src/install/dnf.rs) and run with the Python
# interpreter that the host's `dnf` uses, once per compose. Reads one JSON
# request per line on stdin and writes one JSON reply per line on stdout,
# until end of input; progress goes to stderr. A failed request is answered
# with {"error": "...", "class": "..."}. An install
# request with "report_files" also gets, before its reply, one line
# {"event": {"kind": "installed", "files": [...]}} per package as rpm finishes
# it: the package's regular files (sizes 1 byte to 64 MiB), for the caller to
# start compressing them while rpm goes on.
#
# Why the Python API rather than the dnf CLI: the CLI cannot depsolve without
# installing and print a machine-readable result (name, EVRA, repo, rpm-md
# checksum, sourcerpm, size), cannot apply lockfile excludes, and reports a
# failing %post only as a warning with exit status 0.
#
# The environment (set by the caller) has HOME pointing at a private directory
# whose .rpmmacros sets %_dbpath to /usr/share/rpm, so rpm and the rpmkeys
# subprocess agree on where the rpmdb lives (Debian's default is ~/.rpmdb).

import concurrent.futures
import ctypes
import ctypes.util
import functools
import hashlib
import json
import os
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import dnf
import dnf.exceptions
import dnf.repo
import dnf.rpm.miscutils
import dnf.rpm.transaction
import dnf.yum.misc
import dnf.crypto
import hawkey
import rpm


class Failure(Exception):
    def __init__(self, message, cls="failed"):
        super().__init__(message)
        self.cls = cls


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def setup_base(req, installroot, metadata_from_cache):
    """A dnf.Base for `req`. `metadata_from_cache`: use the rpm-md metadata
    already in the cache (the steps after resolve must see what it saw);
    `req["cache_only"]` additionally forbids downloading RPMs (dnf -C)."""
    cache_only = req["cache_only"]
    rpm.addMacro("_dbpath", "/usr/share/rpm")
    rpm.addMacro("_db_backend", "sqlite")
    work = req["workdir"]
    for sub in ("persist", "log"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    os.makedirs(installroot, exist_ok=True)
    base = dnf.Base()
    # After dnf.Base(): creating it re-reads rpm's macro files, which would
    # put %_install_langs back to "all" over a value defined before.
    if req.get("install_langs"):
        rpm.addMacro("_install_langs", ":".join(req["install_langs"]))
    conf = base.conf
    conf.installroot = installroot
    conf.cachedir = req["cachedir"]
    conf.persistdir = os.path.join(work, "persist")
    conf.logdir = os.path.join(work, "log")
    conf.keepcache = True
    conf.history_record = False
    conf.assumeyes = True
    conf.install_weak_deps = bool(req["recommends"])
    conf.reposdir = [req["reposdir"]]
    conf.releasever = req["releasever"]
    conf.substitutions["releasever"] = req["releasever"]
    conf.substitutions["basearch"] = req["basearch"]
    for key, value in req.get("repovars", {}).items():
        conf.substitutions[key] = value
    if req.get("proxy"):
        conf.proxy = req["proxy"]
    if not req["documentation"]:
        conf.tsflags.append("nodocs")
    if cache_only:
        conf.cacheonly = True
    base.read_all_repos()
    wanted = set(req["enable"])
    for repo in base.repos.values():
        if repo.id in wanted:
            repo.enable()
            repo.skip_if_unavailable = False
            if cache_only or metadata_from_cache:
                repo._repo.setSyncStrategy(dnf.repo.SYNC_ONLY_CACHE)
            else:
                # Always check repomd.xml (like rpm-ostree); metadata that did
                # not change is reused from the cache.
                repo._repo.expire()
        else:
            repo.disable()
    missing = wanted - set(base.repos.keys())
    if missing:
        raise Failure("Unknown rpm-md repository: %s" % ", ".join(sorted(missing)), "invalid_input")
    try:
        base.fill_sack(load_system_repo=False, load_available_repos=True)
    except dnf.exceptions.RepoError as e:
        hint = ""
        if cache_only:
            hint = " (cache-only: run once without --cache-only to fill the cache in %s)" % conf.cachedir
        raise Failure("Loading rpm-md repositories: %s%s" % (e, hint))
    return base


def checksum_repr(pkg):
    chk = pkg.chksum
    if not chk:
        return ""
    kind, value = chk
    return "%s:%s" % (hawkey.chksum_name(kind), value.hex())


def evr_of(pkg):
    if pkg.epoch:
        return "%d:%s-%s" % (pkg.epoch, pkg.version, pkg.release)
    return "%s-%s" % (pkg.version, pkg.release)


def apply_lockfile(base, req):
    locked = req.get("locked") or []
    if not locked and not req.get("lock_strict"):
        return
    sack = base.sack
    available = sack.query().available()
    locked_q = sack.query().filterm(empty=True)
    for entry in locked:
        q = available.filter(name=entry["name"], evr=entry["evr"])
        if entry.get("arch"):
            q = q.filter(arch=entry["arch"])
        digest = entry.get("digest")
        if digest:
            q = q.filter(pkg=[p for p in q if checksum_repr(p) == digest])
        if not q:
            label = "%s-%s%s" % (entry["name"], entry["evr"], "." + entry["arch"] if entry.get("arch") else "")
            with_digest = " with checksum %s" % digest if digest else ""
            candidates = available.filter(name=entry["name"])
            log("warning: Couldn't find locked package '%s'%s" % (label, with_digest))
            log("  Packages with the same name: %d" % len(candidates))
            for c in candidates:
                log("    %s (%s) %s" % (c, c.reponame, checksum_repr(c)))
        locked_q = locked_q.union(q)
    if req.get("lock_strict"):
        excluded = available.difference(locked_q)
    else:
        names = sorted({e["name"] for e in locked})
        excluded = available.filter(name=names).difference(locked_q)
        if req.get("lockfile_repos"):
            excluded = excluded.union(
                available.filter(reponame=req["lockfile_repos"]).difference(locked_q))
    sack.add_excludes(excluded)


def apply_excludes(base, req):
    names = req.get("exclude") or []
    if names:
        base.sack.add_excludes(base.sack.query().filter(name=names))


def pkg_cmp(a, b):
    if a.name != b.name:
        return -1 if a.name < b.name else 1
    c = rpm.labelCompare((str(a.epoch), a.version, a.release), (str(b.epoch), b.version, b.release))
    if c:
        return c
    if a.arch != b.arch:
        return -1 if a.arch < b.arch else 1
    return 0


def describe(pkg):
    return {
        "name": pkg.name,
        "epoch": pkg.epoch,
        "version": pkg.version,
        "release": pkg.release,
        "arch": pkg.arch,
        "repo": pkg.reponame,
        "checksum": checksum_repr(pkg),
        "sourcerpm": pkg.sourcerpm or "",
        "download_size": pkg.downloadsize,
    }


def depsolve(base):
    try:
        base.resolve(allow_erasing=False)
    except dnf.exceptions.DepsolveError as e:
        raise Failure("Depsolve failed:\n%s" % str(e).strip())
    return sorted(base.transaction.install_set, key=functools.cmp_to_key(pkg_cmp))


def mark_requested(base, req):
    missing = []
    for spec in req["packages"]:
        try:
            base.install(spec, strict=True)
        except dnf.exceptions.MarkingError:
            missing.append(spec)
    for repo, specs in req.get("repo_packages", []):
        for spec in specs:
            try:
                base.install(spec, reponame=repo, strict=True)
            except dnf.exceptions.MarkingError:
                raise Failure("No matches for '%s' in repo '%s'" % (spec, repo))
    if missing:
        searched = ", ".join(sorted(r.id for r in base.repos.iter_enabled())) or "none"
        raise Failure("Packages not found: %s (searched repositories: %s); check the names in "
                      "'packages' or add the repository that provides them to 'repos'"
                      % (", ".join(missing), searched))


def repo_states(base):
    states = []
    for repo in sorted(base.repos.iter_enabled(), key=lambda r: r.id):
        states.append({"id": repo.id, "timestamp": repo._repo.getMaxTimestamp()})
    return states


def mark_exact(base, req):
    """Select exactly the packages of an earlier resolution."""
    available = base.sack.query().available()
    wanted = []
    for p in req["transaction"]:
        q = available.filter(name=p["name"], epoch=p["epoch"], version=p["version"],
                             release=p["release"], arch=p["arch"], reponame=p["repo"])
        if not q:
            raise Failure("Package %s-%s-%s.%s from repo '%s' is no longer available"
                          % (p["name"], p["version"], p["release"], p["arch"], p["repo"]))
        wanted.append(q[0])
    # Weak dependencies were decided at resolve time; only the listed set goes in.
    base.conf.install_weak_deps = False
    for pkg in wanted:
        base.package_install(pkg, strict=True)
    return wanted


def download_checked(base, pkgs, req):
    try:
        base.download_packages(pkgs)
    except dnf.exceptions.DownloadError as e:
        raise Failure("Downloading packages: %s" % e)
    check_signatures(base, pkgs, req)


def check_signatures(base, pkgs, req):
    """dnf's gpgcheck, with repo keys imported into a private keyring root
    (not the target's rpmdb, which must list only the installed packages)."""
    keyroot = os.path.join(req["workdir"], "keyring")
    os.makedirs(keyroot, exist_ok=True)
    ts = dnf.rpm.transaction.initReadOnlyTransaction(root=keyroot)
    imported = set()
    errors = []
    for pkg in pkgs:
        repo = base.repos[pkg.repoid]
        if not repo.gpgcheck:
            continue
        if repo.id not in imported:
            imported.add(repo.id)
            for keyurl in repo.gpgkey:
                try:
                    infos = dnf.crypto.retrieve(keyurl, repo)
                except Exception as e:
                    raise Failure("Retrieving GPG key %s for repo '%s': %s" % (keyurl, repo.id, e))
                if not infos:
                    raise Failure("GPG key %s for repo '%s' contains no OpenPGP public key; "
                                  "fix gpgkey= in its .repo file" % (keyurl, repo.id))
                for info in infos:
                    if ts.pgpImportPubkey(dnf.yum.misc.procgpgkey(info.raw_key)) != 0:
                        raise Failure("Importing GPG key %s for repo '%s' failed" % (keyurl, repo.id))
        result = dnf.rpm.miscutils.checkSig(ts, pkg.localPkg())
        fn = os.path.basename(pkg.localPkg())
        if result == 0:
            continue
        msg = {
            1: "Public key for %s is not installed" % fn,
            2: "Problem opening package %s" % fn,
            3: "Public key for %s is not trusted" % fn,
            4: "Package %s is not signed" % fn,
        }.get(result, "Signature check of %s failed" % fn)
        errors.append("%s (repo '%s' has gpgcheck=1)" % (msg, repo.id))
    if errors:
        raise Failure("GPG check FAILED: " + "; ".join(errors))


class TransactionCallback:
    """rpm's transaction callback: opens each package file when rpm asks for it,
    prints one progress line per package, and collects errors. Scriptlet output
    goes to stderr (fd 1 is redirected there in main())."""

    def __init__(self, total, headers=None, quiet=False):
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.fds = {}
        self.errors = []
        # path -> header, when the caller wants "installed" events.
        self.headers = headers

    def __call__(self, what, amount, total, key, data):
        if what == rpm.RPMCALLBACK_INST_OPEN_FILE:
            path = key[0]
            fd = os.open(path, os.O_RDONLY)
            self.fds[path] = fd
            return fd
        if what == rpm.RPMCALLBACK_INST_START:
            # Once per package (rpm opens each package twice: to verify
            # its digests, then to install it).
            self.done += 1
            if not self.quiet:
                log("  [%d/%d] %s" % (self.done, self.total, key[1]))
        elif what == rpm.RPMCALLBACK_INST_CLOSE_FILE:
            fd = self.fds.pop(key[0], None)
            if fd is not None:
                os.close(fd)
        elif what == rpm.RPMCALLBACK_INST_STOP:
            # The package's files are in place (its %post has not run yet;
            # rpm opens and closes each package once more before, to verify).
            if self.headers is not None and key[0] in self.headers:
                try:
                    report_installed(self.headers.pop(key[0]))
                except Exception as e:
                    # Only a hint for the caller (it then compresses later):
                    # say so once and stop reporting, never fail the install.
                    log("warning: not reporting installed files any more: %s: %s" % (type(e).__name__, e))
                    self.headers = None
        elif what == rpm.RPMCALLBACK_SCRIPT_ERROR:
            # amount: the scriptlet's tag; total: non-zero when the failure is fatal.
            # Any failing scriptlet fails the compose, as in rpm-ostree.
            name = rpm.tagnames.get(amount, "<unknown>")
            self.errors.append("Error in %s scriptlet in rpm package %s" % (name, key[1] if key else "?"))
        elif what in (rpm.RPMCALLBACK_UNPACK_ERROR, rpm.RPMCALLBACK_CPIO_ERROR):
            self.errors.append("Unpacking %s failed" % (key[1] if key else "a package"))
        return None


# Where the rpmdb lives in the root (%_dbpath, see setup_base and .rpmmacros).
RPMDB_DIR = "usr/share/rpm"

# Regular files up to this size are reported (the caller compresses bigger
# ones its own way; REPORTED_FILE_MAX in src/install/mod.rs).
REPORT_MAX_SIZE = 64 << 20

# The reply stream (set by main()); events go there too, before the reply.
REPLIES = None


def utf8_encodable(name):
    """Whether `name` can travel as JSON to the caller (rpm gives names that
    are not UTF-8 with surrogate escapes, which JSON parsers refuse). Those
    files are simply not reported: the export compresses them itself."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def report_installed(hdr):
    names = hdr[rpm.RPMTAG_FILENAMES]
    modes = hdr[rpm.RPMTAG_FILEMODES]
    sizes = hdr[rpm.RPMTAG_LONGFILESIZES]
    files = [n for n, m, s in zip(names, modes, sizes)
             if stat.S_ISREG(m & 0xffff) and 0 < s <= REPORT_MAX_SIZE and utf8_encodable(n)]
    if files and REPLIES is not None:
        REPLIES.write(json.dumps({"event": {"kind": "installed", "files": files}}) + "\n")
        REPLIES.flush()


def remove_rpmdb_files(dbdir):
    for name in ("rpmdb.sqlite", "rpmdb.sqlite-wal", "rpmdb.sqlite-shm"):
        try:
            os.unlink(os.path.join(dbdir, name))
        except FileNotFoundError:
            pass


def run_rpm_transaction(root, pkgs, req):
    """Install `pkgs` (dnf packages, already downloaded and checked) into `root`
    with one rpm transaction.

    Why not dnf's do_transaction: for a fresh root it adds a test transaction,
    a Python callback per file and history bookkeeping; driving rpm directly
    installs the same packages in the same order (rpm orders the transaction)
    in about half the time (corpus-medium: 1.4 s instead of 3.1 s)."""
    run_prepared(prepare_rpm_transaction(root, pkgs, req, justdb=False))


class Prepared:
    """An ordered rpm transaction, ready to run."""

    def __init__(self, ts, by_path, headers, npkgs, justdb):
        self.ts = ts
        # path -> (dnf package, header)
        self.by_path = by_path
        # path -> header, for "installed" events (None: no events)
        self.headers = headers
        self.npkgs = npkgs
        self.justdb = justdb

    def ordered(self):
        """(path, dnf package, header) in rpm's transaction order."""
        return [(te.Key()[0],) + self.by_path[te.Key()[0]] for te in self.ts]


def sha256_payload_digest(hdr):
    """The package's payload digest (hex) when it is a SHA-256 one, else None."""
    digests = hdr[rpm.RPMTAG_PAYLOADDIGEST]
    if not digests or hdr[rpm.RPMTAG_PAYLOADDIGESTALGO] != 8:
        return None
    return digests[0].lower()


def payload_offset(f):
    """Where the payload of the RPM open as `f` starts: after the 96-byte lead,
    the signature header (padded to 8 bytes) and the main header."""
    offset = 96
    for which in ("signature", "main"):
        f.seek(offset)
        intro = f.read(16)
        if len(intro) != 16 or intro[:3] != b"\x8e\xad\xe8":
            raise Failure("%s: no %s header at offset %d" % (f.name, which, offset))
        count, size = struct.unpack(">II", intro[8:16])
        offset += 16 + 16 * count + size
        if which == "signature":
            offset = (offset + 7) // 8 * 8
    return offset


def check_payload_digests(expected):
    """Fail unless the SHA-256 of each RPM's payload (as stored, compressed) is
    the digest its header gives; `expected`: (path, hex digest) pairs. Hashes
    on every core (hashlib releases the GIL): what rpm checks before a
    transaction, without its single thread."""

    def check(item):
        path, want = item
        got = hashlib.sha256()
        with open(path, "rb") as f:
            f.seek(payload_offset(f))
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                got.update(chunk)
        if got.hexdigest() != want:
            return "%s: payload digest mismatch: header says %s, payload has %s" % (
                os.path.basename(path), want, got.hexdigest())
        return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        bad = [m for m in pool.map(check, expected) if m]
    if bad:
        raise Failure("Packages that do not verify: " + "; ".join(bad))


def prepare_rpm_transaction(root, pkgs, req, justdb):
    """The ordered transaction installing `pkgs` into `root`. `justdb`: it
    will only write the rpmdb (no files, no scriptlets: see
    plan_cached_install); a package the cached installer cannot install
    makes it return the reason (a string) instead, with nothing written."""
    dbdir = os.path.join(root, RPMDB_DIR)
    fresh_rpmdb = not os.path.exists(os.path.join(dbdir, "rpmdb.sqlite"))
    ts = rpm.TransactionSet(root)
    flags = rpm.RPMTRANS_FLAG_NODOCS if not req["documentation"] else 0
    if justdb:
        flags |= rpm.RPMTRANS_FLAG_JUSTDB
    # rpm --nofiledigest: rpm would otherwise hash every file it writes
    # (libgcrypt's SHA-256 on rpm's single unpacking thread: 0.5 s of its
    # 4.8 s on corpus-large) to compare with the header. The payload digest,
    # checked before the transaction (see below), covers every byte of those
    # files: tests/install.rs and tests/cached_install.rs give rpm another
    # build's payload and expect a refusal.
    flags |= rpm.RPMTRANS_FLAG_NOFILEDIGEST
    ts.setFlags(flags)
    # Signatures were checked by check_signatures() against the repo keys; the
    # target's rpmdb holds no keys, so only digests are verified here. With
    # justdb the payload is never read: the package cache checks its digest
    # when it imports the payload, and reading it here would double the work.
    # (The check rpm makes of every package before its transaction is
    # relaxed the same way below, once the headers are read.)
    vsflags = rpm._RPMVSF_NOSIGNATURES
    if justdb:
        vsflags |= rpm._RPMVSF_NOPAYLOAD
    ts.setVSFlags(vsflags)
    headers = {} if req.get("report_files") and not justdb else None
    by_path = {}
    for pkg in pkgs:
        path = pkg.localPkg()
        fd = os.open(path, os.O_RDONLY)
        try:
            hdr = ts.hdrFromFdno(fd)
        except rpm.error as e:
            raise Failure("Reading the header of %s: %s" % (path, e))
        finally:
            os.close(fd)
        ts.addInstall(hdr, (path, str(pkg)), "i")
        by_path[path] = (pkg, hdr)
        if justdb:
            blocker = cached_install_blocker(hdr)
            if blocker:
                # Leave the root as it was: the install with rpm that follows
                # must find no rpmdb (see fresh_rpmdb).
                ts.closeDB()
                if fresh_rpmdb:
                    remove_rpmdb_files(dbdir)
                return blocker
        if headers is not None:
            headers[path] = hdr
    if all(sha256_payload_digest(hdr) for _, hdr in by_path.values()):
        # Before its transaction rpm checks every package with its own flags
        # (`%_pkgverify_flags`, `%_pkgverify_level`): it reads and hashes each
        # payload on its one thread, with libgcrypt's SHA-256 (corpus-large:
        # 295 MiB, 0.75 s before rpm writes the first file; in the rpmdb-only
        # transaction, a quarter of its 1.2 s). Here the payload digests are
        # checked once, faster: by the package cache when it imported the
        # payloads (justdb), else below on every core. Header digests are
        # still rpm's to check; a package without a SHA-256 payload digest
        # keeps rpm's full check.
        if not justdb:
            check_payload_digests(
                [(path, sha256_payload_digest(hdr)) for path, (_, hdr) in by_path.items()])
        ts.setVfyFlags(ts.getVfyFlags() | rpm._RPMVSF_NOPAYLOAD)
        ts.setVfyLevel(0)
    unresolved = ts.check()
    if unresolved:
        msgs = sorted({"%s requires %s" % (p[0][0], p[1][0]) for p in unresolved})
        raise Failure("The resolved set has unmet dependencies: %s" % "; ".join(msgs))
    ts.order()
    if fresh_rpmdb:
        # rpm runs the rpmdb without fsync only when the transaction creates
        # it ("If primary got created, we can safely run without fsync",
        # rpmdb.c); otherwise every package's commit fdatasyncs the sqlite WAL,
        # a filesystem journal commit each (corpus-medium: 167 of them, 1-2 s).
        # The lookups above opened, and so created, it read-only: it is still
        # empty, so let the transaction create it again.
        ts.closeDB()
        remove_rpmdb_files(dbdir)
    return Prepared(ts, by_path, headers, len(pkgs), justdb)


def run_prepared(prepared):
    ts = prepared.ts
    callback = TransactionCallback(prepared.npkgs, prepared.headers, quiet=prepared.justdb)
    problems = ts.run(callback, "")
    for fd in callback.fds.values():
        os.close(fd)
    # Close the rpmdb now (sqlite checkpoints its journal) rather than at exit.
    ts.closeDB()
    if problems:
        raise Failure("RPM transaction failed: %s" % "; ".join(str(p) for p in problems))
    failed = [str(te.N()) for te in ts if te.Failed()]
    if callback.errors or failed or problems is not None:
        detail = callback.errors or ["rpm reported a failure for %s" % ", ".join(failed or ["the transaction"])]
        raise Failure("; ".join(detail))


# Scriptlets of a fresh install, in the order rpm runs them for one package
# (pretrans and posttrans around the whole transaction). The tags of the
# scriptlet text, its interpreter and its flags.
INSTALL_SCRIPTLETS = {
    "pretrans": (rpm.RPMTAG_PRETRANS, rpm.RPMTAG_PRETRANSPROG, rpm.RPMTAG_PRETRANSFLAGS),
    "pre": (rpm.RPMTAG_PREIN, rpm.RPMTAG_PREINPROG, rpm.RPMTAG_PREINFLAGS),
    "post": (rpm.RPMTAG_POSTIN, rpm.RPMTAG_POSTINPROG, rpm.RPMTAG_POSTINFLAGS),
    "posttrans": (rpm.RPMTAG_POSTTRANS, rpm.RPMTAG_POSTTRANSPROG, rpm.RPMTAG_POSTTRANSFLAGS),
}

# rpmscript.h: the body has macros to expand / is a query format.
RPMSCRIPT_FLAG_EXPAND = 1 << 0
RPMSCRIPT_FLAG_QFORMAT = 1 << 1

# Payload compressors the package cache reads (src/install/rpmpayload.rs).
CACHE_COMPRESSORS = ("zstd", "gzip", "xz", "lzma")


def scriptlet_prog(hdr, progtag):
    prog = hdr[progtag]
    if isinstance(prog, (bytes, str)):
        prog = [prog]
    return [p.decode() if isinstance(p, bytes) else p for p in (prog or [])]


def has_scriptlet(hdr, kind):
    """Whether `hdr` has scriptlet `kind`: a body, or only an interpreter
    (`%post -p /sbin/ldconfig`), which rpm runs too."""
    tag, progtag, _ = INSTALL_SCRIPTLETS[kind]
    return hdr[tag] is not None or bool(scriptlet_prog(hdr, progtag))


def cached_install_blocker(hdr):
    """Why the cached installer cannot do exactly what rpm does for this
    package, or None. It runs %pretrans, %pre, %post and %posttrans
    scriptlets and triggers (shell or Lua, Lua triggers excepted) and
    creates regular files (with their file capabilities), directories and
    symlinks; rpm's other behaviours (Lua triggers, relocation, device
    nodes) are left to rpm itself."""
    name = hdr[rpm.RPMTAG_NEVRA]
    # Triggers on removal (un, postun) never fire in a fresh install;
    # %transfiletriggerin is run by run_trans_file_triggers.
    for progtag in (rpm.RPMTAG_TRIGGERSCRIPTPROG, rpm.RPMTAG_TRANSFILETRIGGERSCRIPTPROG,
                    rpm.RPMTAG_FILETRIGGERSCRIPTPROG):
        for prog in hdr[progtag] or []:
            if prog == "<lua>":
                return "%s has a Lua trigger" % name
    if hdr[rpm.RPMTAG_PREFIXES]:
        return "%s is relocatable" % name
    compressor = hdr[rpm.RPMTAG_PAYLOADCOMPRESSOR] or "gzip"
    if compressor not in CACHE_COMPRESSORS:
        return "%s has a %s-compressed payload" % (name, compressor)
    for fname, mode in zip(hdr[rpm.RPMTAG_FILENAMES], hdr[rpm.RPMTAG_FILEMODES]):
        if not utf8_encodable(fname):
            return "%s has a file name that is not UTF-8" % name
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            return "%s has a special file %s" % (name, fname)
    return None


def skipped_files(hdr, nodocs, langs):
    """For each file of `hdr`, whether rpm's install leaves it out: a %doc
    with nodocs, a file whose languages %_install_langs excludes, and then a
    directory of the package that this left empty (rpm's skipInstallFiles,
    which runs for --justdb too but whose verdict only the real install
    records in the rpmdb, see record_skipped_files)."""
    files = list(rpm.files(hdr))
    dirnames = hdr[rpm.RPMTAG_DIRNAMES] or []
    refs = [0] * len(dirnames)
    emptied = [False] * len(dirnames)
    skip = [False] * len(files)
    for i, f in enumerate(files):
        refs[f.dx] += 1
        out = False
        if langs is not None and f.langs:
            file_langs = [l for l in f.langs.split("|") if l]
            out = not any(lang.startswith(l) for lang in langs for l in file_langs)
        if not out and nodocs and f.fflags & rpm.RPMFILE_DOC:
            out = True
        if out:
            refs[f.dx] -= 1
            emptied[f.dx] = True
            skip[i] = True
    for j, dn in enumerate(dirnames):
        if refs[j] or not emptied[j]:
            continue
        path = dn.rstrip("/")
        for i, f in enumerate(files):
            if not skip[i] and stat.S_ISDIR(f.mode) and f.name == path:
                skip[i] = True
                break
    return skip


def record_skipped_files(root, skipped):
    """Mark the files rpm's install would have left out as "not installed" in
    the rpmdb that --justdb wrote (it records every file as installed), so
    it says what a real install says. The file states are a one-byte-per-file
    tag outside the header's signed region; each header is patched in place
    in the sqlite Packages table."""
    dbts = rpm.TransactionSet(root)
    rows = {}
    mi = dbts.dbMatch()
    for hdr in mi:
        skip = skipped.get(hdr[rpm.RPMTAG_NEVRA])
        if skip and any(skip):
            rows[mi.instance()] = skip
    dbts.closeDB()
    if not rows:
        return
    con = sqlite3.connect(os.path.join(root, RPMDB_DIR, "rpmdb.sqlite"))
    try:
        for hnum, skip in rows.items():
            (blob,) = con.execute("SELECT blob FROM Packages WHERE hnum = ?", (hnum,)).fetchone()
            blob = bytearray(blob)
            count, _ = struct.unpack(">II", blob[:8])
            data = 8 + 16 * count
            for e in range(count):
                tag, kind, offset, n = struct.unpack(">IIII", blob[8 + 16 * e:24 + 16 * e])
                if tag == rpm.RPMTAG_FILESTATES:
                    if kind != 1 or n != len(skip) or data + offset + n > len(blob):
                        raise Failure("Unexpected file states in the rpmdb header %d" % hnum)
                    for i, out in enumerate(skip):
                        if out:
                            blob[data + offset + i] = rpm.RPMFILE_STATE_NOTINSTALLED
                    break
            else:
                raise Failure("The rpmdb header %d has no file states" % hnum)
            con.execute("UPDATE Packages SET blob = ? WHERE hnum = ?", (bytes(blob), hnum))
        con.commit()
    finally:
        con.close()


# The last planned cached install: {"root": path, "headers": [hdr, ...]} in
# transaction order, for the scriptlet requests that follow it.
PLANNED = {}


@functools.lru_cache(maxsize=None)
def libcap():
    """libcap, which librpm itself links: file capabilities are converted
    exactly as rpm's install converts them."""
    lib = ctypes.CDLL(ctypes.util.find_library("cap") or "libcap.so.2", use_errno=True)
    lib.cap_from_text.argtypes = [ctypes.c_char_p]
    lib.cap_from_text.restype = ctypes.c_void_p
    lib.cap_set_fd.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.cap_set_fd.restype = ctypes.c_int
    lib.cap_free.argtypes = [ctypes.c_void_p]
    lib.cap_free.restype = ctypes.c_int
    return lib


@functools.lru_cache(maxsize=None)
def file_caps_xattr(root, captxt):
    """The security.capability value rpm gives a file with %caps(captxt),
    hex: rpm's fsm does cap_from_text, then cap_set_fd. This does the same
    on a nameless scratch file in `root` (so the filesystem and the user
    namespace are those of the files to come) and reads the value back."""
    lib = libcap()
    caps = lib.cap_from_text(captxt.encode())
    if not caps:
        raise Failure("file capabilities %r: libcap cannot parse them (%s)"
                      % (captxt, os.strerror(ctypes.get_errno())))
    try:
        with tempfile.TemporaryFile(dir=root) as scratch:
            if lib.cap_set_fd(scratch.fileno(), caps) != 0:
                raise Failure("setting file capabilities %r on a file in %s: %s"
                              % (captxt, root, os.strerror(ctypes.get_errno())))
            return os.getxattr(scratch.fileno(), "security.capability").hex()
    finally:
        lib.cap_free(caps)


def plan_cached_install(root, pkgs, req):
    """The cached installer's part in the helper: prepare the rpm transaction
    of `pkgs` that writes their rpmdb into `root` (--justdb: rpm orders it,
    checks dependencies and, when it runs, file conflicts), and tell the
    caller, in rpm's order, each package's scriptlets and the files to create
    (without those nodocs and %_install_langs leave out). The caller then
    has the rpmdb written (write_planned_rpmdb) while it creates the files
    from its package cache, and asks for each scriptlet in turn
    (run_planned_scriptlet). {"blocked": reason} when some package needs
    rpm's own install (see cached_install_blocker); nothing is written then."""
    PLANNED.clear()
    prepared = prepare_rpm_transaction(root, pkgs, req, justdb=True)
    if isinstance(prepared, str):
        return {"blocked": prepared}
    ordered = prepared.ordered()
    nodocs = not req["documentation"] or rpm.expandMacro("%{?_excludedocs}") == "1"
    langs = rpm.expandMacro("%{_install_langs}")
    langs = None if langs in ("", "all") or langs.startswith("%") else langs.split(":")
    skipped = {}
    for _, _, hdr in ordered:
        skipped[hdr[rpm.RPMTAG_NEVRA]] = skipped_files(hdr, nodocs, langs)
    plan = []
    headers = []
    # Any %filetriggerin in the transaction: every package's install may set
    # one off (the caller asks around each %post).
    any_file_triggers = any(file_triggers_in(hdr, "file") for _, _, hdr in ordered)
    any_package_triggers = any(f & rpm.RPMSENSE_TRIGGERIN
                               for _, _, hdr in ordered for f in hdr[rpm.RPMTAG_TRIGGERFLAGS] or [])
    any_prein_triggers = any(f & rpm.RPMSENSE_TRIGGERPREIN
                             for _, _, hdr in ordered for f in hdr[rpm.RPMTAG_TRIGGERFLAGS] or [])
    for path, pkg, hdr in ordered:
        nevra = hdr[rpm.RPMTAG_NEVRA]
        skip = skipped[nevra]
        files = []
        for i, f in enumerate(rpm.files(hdr)):
            if skip[i] or f.fflags & rpm.RPMFILE_GHOST:
                continue
            try:
                caps = file_caps_xattr(root, f.caps) if f.caps else ""
            except (Failure, OSError) as e:
                PLANNED.clear()
                return {"blocked": "%s: file capabilities of %s: %s" % (nevra, f.name, e)}
            files.append([f.name, f.mode, f.user, f.group, f.linkto, f.fflags, caps])
        scripts = [kind for kind in INSTALL_SCRIPTLETS if has_scriptlet(hdr, kind)]
        if trans_file_triggers_in(hdr):
            scripts.append("transfiletriggerin")
        if any_file_triggers:
            scripts.append("filetriggerin")
        if any_package_triggers:
            scripts.append("triggerin")
        if any_prein_triggers:
            scripts.append("triggerprein")
        plan.append({"nevra": nevra, "rpm": path, "checksum": checksum_repr(pkg),
                     "scripts": scripts, "files": files})
        headers.append(hdr)
    PLANNED.update(root=root, headers=headers, pending=(prepared, skipped), skipped=skipped)
    return {"packages": plan}


def write_planned_rpmdb(req):
    """Run the last plan's --justdb transaction (the caller puts the files
    in place meanwhile) and record the files rpm leaves out."""
    pending = PLANNED.pop("pending", None)
    if pending is None:
        raise Failure("internal error: rpmdb request without a cached install plan")
    started = time.monotonic()
    prepared, skipped = pending
    run_prepared(prepared)
    record_skipped_files(PLANNED["root"], skipped)
    log("rpmdb written in %.1fs" % (time.monotonic() - started))
    return {}


FILE_TRIGGER_TAGS = {
    # kind: (names, flags, index, priorities, scripts, progs)
    "trans": (rpm.RPMTAG_TRANSFILETRIGGERNAME, rpm.RPMTAG_TRANSFILETRIGGERFLAGS,
              rpm.RPMTAG_TRANSFILETRIGGERINDEX, rpm.RPMTAG_TRANSFILETRIGGERPRIORITIES,
              rpm.RPMTAG_TRANSFILETRIGGERSCRIPTS, rpm.RPMTAG_TRANSFILETRIGGERSCRIPTPROG),
    "file": (rpm.RPMTAG_FILETRIGGERNAME, rpm.RPMTAG_FILETRIGGERFLAGS,
             rpm.RPMTAG_FILETRIGGERINDEX, rpm.RPMTAG_FILETRIGGERPRIORITIES,
             rpm.RPMTAG_FILETRIGGERSCRIPTS, rpm.RPMTAG_FILETRIGGERSCRIPTPROG),
}

# rpmtriggers.c: file triggers with a priority at least this run before
# the package's %post, the others after it.
TRIGGER_PRIORITY_BOUND = 10000


def trans_file_triggers_in(hdr):
    return file_triggers_in(hdr, "trans")


def file_triggers_in(hdr, kind):
    """The install ("in") file triggers of `hdr` of `kind` ("trans" or
    "file"), in the order rpm runs one package's triggers (higher priority
    first, then trigger index): [(index, [prefixes...], priority)]."""
    nametag, flagtag, indextag, prioritytag, _, _ = FILE_TRIGGER_TAGS[kind]
    names = hdr[nametag] or []
    flags = hdr[flagtag] or []
    indexes = hdr[indextag] or []
    priorities = hdr[prioritytag] or []
    triggers = {}
    for name, flag, tix in zip(names, flags, indexes):
        entry = triggers.setdefault(tix, {"prefixes": [], "in": None})
        if entry["in"] is None:
            # rpm looks at the first dependency of a trigger for its sense.
            entry["in"] = bool(flag & rpm.RPMSENSE_TRIGGERIN)
        entry["prefixes"].append(name.decode() if isinstance(name, bytes) else name)
    ordered = sorted(triggers, key=lambda tix: (-priorities[tix], tix))
    return [(tix, triggers[tix]["prefixes"], priorities[tix]) for tix in ordered if triggers[tix]["in"]]


def installed_files(hdr, skipped):
    """The files of `hdr` an install puts in place (not those nodocs or
    install-langs leave out)."""
    skip = skipped.get(hdr[rpm.RPMTAG_NEVRA]) or []
    return [f for i, f in enumerate(hdr[rpm.RPMTAG_FILENAMES] or []) if not (i < len(skip) and skip[i])]


def matching(prefixes, file_lists):
    """For each prefix, the files of each list (in order) under it."""
    return [f for prefix in prefixes for files in file_lists for f in files if f.startswith(prefix)]


def run_trigger_script(root, hdr, scripttag, progtag, tix, what, args, stdin_text):
    """Trigger `tix` of `hdr` (its body in `scripttag`, its interpreter in
    `progtag`), run as rpm runs scriptlets; a failure fails the install."""
    scripts = hdr[scripttag] or []
    progs = hdr[progtag] or []
    body = scripts[tix] if tix < len(scripts) else None
    prog = progs[tix] if tix < len(progs) else None
    status = run_external(root, [prog] if prog else ["/bin/sh"], body, args, stdin_text)
    if status != 0:
        raise Failure("Error in %%%s scriptlet in rpm package %s (%s)"
                      % (what, hdr[rpm.RPMTAG_NEVRA], status))


def run_file_trigger(root, hdr, kind, tix, matched):
    _, _, _, _, scripttag, progtag = FILE_TRIGGER_TAGS[kind]
    run_trigger_script(root, hdr, scripttag, progtag, tix,
                       "transfiletriggerin" if kind == "trans" else "filetriggerin",
                       ["0"], "".join(f + "\n" for f in matched))


def run_package_file_triggers(root, index, headers, skipped, upper):
    """rpm's %filetriggerin around package `index`'s %post (runFileTriggers
    and runImmedFileTriggers, psm.c): `upper` the triggers of priority at
    least 10000 (before %post; the default priority is 1000000), else the
    others (after it). First the triggers of the packages installed so far
    (this one included) that its files set off, fed those files; then this
    package's own triggers, fed the files of the packages installed before
    it under their prefixes (checked against rpm by the tests)."""
    def in_class(priority):
        return (priority >= TRIGGER_PRIORITY_BOUND) == upper
    hdr = headers[index]
    own_files = installed_files(hdr, skipped)
    fired = []
    for hnum, other in enumerate(headers[:index + 1]):
        for tix, prefixes, priority in file_triggers_in(other, "file"):
            if in_class(priority) and matching(prefixes, [own_files]):
                fired.append((-priority, hnum, tix, other, prefixes))
    for _, _, tix, other, prefixes in sorted(fired, key=lambda t: t[:3]):
        run_file_trigger(root, other, "file", tix, matching(prefixes, [own_files]))
    # rpm feeds a package's own files to its own triggers once, in the loop
    # above: here only the packages installed before it.
    earlier = [installed_files(h, skipped) for h in headers[:index]]
    for tix, prefixes, priority in file_triggers_in(hdr, "file"):
        matched = matching(prefixes, earlier)
        if in_class(priority) and matched:
            run_file_trigger(root, hdr, "file", tix, matched)


def run_trans_file_triggers(root, index, headers, skipped):
    """Run the %transfiletriggerin scripts of package `index` of the plan as
    rpm does after its transaction: each trigger whose prefixes match any
    installed file (files nodocs or install-langs left out do not count)
    runs once, chrooted, with those files on stdin (for each prefix, package
    by package in install order, each package's files in header order) and
    the argument 0."""
    hdr = headers[index]
    everything = [installed_files(h, skipped) for h in headers]
    for tix, prefixes, _ in trans_file_triggers_in(hdr):
        matched = matching(prefixes, everything)
        if matched:
            run_file_trigger(root, hdr, "trans", tix, matched)


def write_script(root, body, suffix=""):
    """`body` in a new temporary file under the root's /var/tmp (created as
    rpm creates it, 0755), as rpm writes a scriptlet; returns its path on
    the host (the script sees /var/tmp/NAME)."""
    tmpdir = os.path.join(root, "var/tmp")
    os.makedirs(tmpdir, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="rpm-tmp.", suffix=suffix, dir=tmpdir)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(body)
    return tmp


def enter_root(root):
    """Chroot into `root` and go to its /, as rpm does for a scriptlet."""
    os.chroot(root)
    os.chdir("/")


def run_external(root, argv, body, args, stdin_text):
    """Run `argv` chrooted into `root` from / the way rpmscript.c does: a
    body goes to a temporary file under /var/tmp, passed with `args`; PATH
    from %_install_script_path; `stdin_text` on stdin; output to stderr.
    Returns "exit status N" or "could not start" on failure, else 0."""
    tmp = None
    if body is not None:
        tmp = write_script(root, body)
        argv = argv + ["/var/tmp/" + os.path.basename(tmp)] + args
    env = dict(os.environ)
    env["PATH"] = rpm.expandMacro("%{_install_script_path}")
    try:
        proc = subprocess.run(argv, preexec_fn=lambda: enter_root(root), env=env,
                              input=stdin_text.encode("utf-8", "surrogateescape") if stdin_text is not None else None,
                              stdin=None if stdin_text is not None else subprocess.DEVNULL,
                              stdout=sys.stderr, stderr=sys.stderr)
    except OSError as e:
        log("failed to exec scriptlet interpreter %s: %s" % (argv[0], e))
        return "could not start"
    finally:
        if tmp is not None:
            os.unlink(tmp)
    return 0 if proc.returncode == 0 else "exit status %d" % proc.returncode


# rpmds.h: the comparison bits of a dependency's flags.
RPMSENSE_SENSEMASK = 15


def trigger_matches(source, name, flags, evr):
    """Whether package header `source` satisfies the trigger condition
    (rpmdsAnyMatchesDep: any of its provides, its own NEVR included)."""
    wanted = rpm.ds((name, flags & RPMSENSE_SENSEMASK, evr), rpm.RPMTAG_TRIGGERNAME)
    provides = rpm.ds(source, rpm.RPMTAG_PROVIDENAME)
    if provides.Search(wanted) >= 0:
        return True
    return source.dsOfHeader().Compare(wanted) > 0


def fire_package_trigger(root, trig, source, already, sense, args):
    """handleOneTrigger: the first trigger of `trig` of `sense` that
    `source` sets off runs (once per trigger index when `already` is
    given), with `args` (the instances of each package installed)."""
    names = trig[rpm.RPMTAG_TRIGGERNAME] or []
    flags = trig[rpm.RPMTAG_TRIGGERFLAGS] or []
    versions = trig[rpm.RPMTAG_TRIGGERVERSION] or [""] * len(names)
    indexes = trig[rpm.RPMTAG_TRIGGERINDEX] or []
    for name, flag, evr, tix in zip(names, flags, versions, indexes):
        if name != source[rpm.RPMTAG_NAME] or not flag & sense:
            continue
        if not trigger_matches(source, name, flag, evr):
            continue
        if already is None or tix not in already:
            run_trigger_script(root, trig, rpm.RPMTAG_TRIGGERSCRIPTS, rpm.RPMTAG_TRIGGERSCRIPTPROG,
                               tix, "triggerin" if sense == rpm.RPMSENSE_TRIGGERIN else "triggerprein",
                               list(args), None)
            if already is not None:
                already.add(tix)
        # One script per trigger/source pair.
        break


def run_package_triggers(root, index, headers, sense):
    """rpm's package triggers of `sense` for package `index` (runTriggers,
    then runImmedTriggers, psm.c): the triggers of the packages installed so
    far that it sets off, then its own triggers that those packages set off.
    %triggerin runs after the package's %post, %triggerprein before its
    %pre: then the package itself is not installed yet, neither as a
    package the others' triggers see nor in the arguments, which count the
    installed instances of the trigger's owner and of the package that sets
    it off."""
    pkg = headers[index]
    if sense == rpm.RPMSENSE_TRIGGERIN:
        installed, theirs, own = headers[:index + 1], ("1", "1"), ("1", "1")
    else:
        installed, theirs, own = headers[:index], ("1", "0"), ("0", "1")
    for other in installed:
        fire_package_trigger(root, other, pkg, None, sense, theirs)
    already = set()
    for name in dict.fromkeys(pkg[rpm.RPMTAG_TRIGGERNAME] or []):
        for other in installed:
            if other[rpm.RPMTAG_NAME] == name:
                fire_package_trigger(root, pkg, other, already, sense, own)


def run_planned_scriptlet(req):
    """Run one scriptlet of the last plan the way rpm does (rpmscript.c):
    the body in a temporary file under the root's /var/tmp, run by its
    interpreter (default /bin/sh) chrooted into the root from /, with
    argument 1 (one instance installed); an interpreter without a body
    (`-p /sbin/ldconfig`) runs alone, without arguments. PATH from
    %_install_script_path, stdin empty, output to stderr. Any failure fails
    the install, as in run_rpm_transaction."""
    root = PLANNED.get("root")
    if root is None:
        raise Failure("internal error: scriptlet request without a cached install plan")
    if req["kind"] == "transfiletriggerin":
        run_trans_file_triggers(root, req["index"], PLANNED["headers"], PLANNED["skipped"])
        return {}
    if req["kind"] == "triggerprein":
        run_package_triggers(root, req["index"], PLANNED["headers"], rpm.RPMSENSE_TRIGGERPREIN)
        return {}
    if req["kind"] == "triggerin":
        run_package_triggers(root, req["index"], PLANNED["headers"], rpm.RPMSENSE_TRIGGERIN)
        return {}
    if req["kind"] in ("filetriggerin-upper", "filetriggerin-lower"):
        run_package_file_triggers(root, req["index"], PLANNED["headers"], PLANNED["skipped"],
                                  req["kind"] == "filetriggerin-upper")
        return {}
    hdr = PLANNED["headers"][req["index"]]
    tag, progtag, flagtag = INSTALL_SCRIPTLETS[req["kind"]]
    body = hdr[tag]
    if isinstance(body, bytes):
        body = body.decode("utf-8", "surrogateescape")
    flags = hdr[flagtag] or 0
    if body is not None and flags & RPMSCRIPT_FLAG_EXPAND:
        body = rpm.expandMacro(body)
    if body is not None and flags & RPMSCRIPT_FLAG_QFORMAT:
        body = hdr.format(body)
    argv = scriptlet_prog(hdr, progtag) or ["/bin/sh"]
    if argv[:1] == ["<lua>"]:
        returncode = run_lua_scriptlet(root, body or "")
        if returncode != 0:
            raise Failure("Error in %%%s scriptlet in rpm package %s (Lua error)"
                          % (req["kind"], hdr[rpm.RPMTAG_NEVRA]))
        return {}
    status = run_external(root, argv, body, ["1"], None)
    if status != 0:
        raise Failure("Error in %%%s scriptlet in rpm package %s (%s)"
                      % (req["kind"], hdr[rpm.RPMTAG_NEVRA], status))
    return {}


def run_lua_scriptlet(root, body):
    """Run a Lua scriptlet the way rpm does (rpmscript.c runLuaScript): in
    rpm's own Lua interpreter (with its rpm and posix modules), chrooted into
    the root, from /, umask 022, with arg = {"<lua>", 1} (one instance
    installed). rpm runs it in its own process; here a forked child does, so
    the chroot ends with it. Whatever the script prints goes to stderr.
    Returns the child's exit status (non-zero: the script failed)."""
    tmp = write_script(root, body, ".lua")
    # The script is loaded from a file: a body inside %{lua:...} would have
    # to keep its braces balanced for the macro parser.
    # The child ends with os._exit, which skips C stdio's flush at exit:
    # files the script left open are flushed here (global ones by name, the
    # rest by collecting garbage, which closes them), as rpm's process would
    # at its exit.
    chunk = ('%%{lua: _G.arg = {"<lua>", 1}; local f = assert(loadfile("/var/tmp/%s")); f(); '
             'for _, v in pairs(_G) do if io.type(v) == "file" then v:flush() end end; '
             'collectgarbage("collect"); io.stdout:flush() }') % os.path.basename(tmp)
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            enter_root(root)
            os.umask(0o022)
            out = rpm.expandMacro(chunk)
            if out:
                os.write(2, out.encode("utf-8", "surrogateescape") + b"\n")
            code = 0
        except BaseException as e:
            os.write(2, ("Lua scriptlet failed: %s\n" % e).encode("utf-8", "replace"))
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        os.unlink(tmp)
    return os.waitstatus_to_exitcode(status)


# The last resolve's dnf.Base and package set, kept for an install request on
# the same session (see take_resolved).
RESOLVED = {}


def forget_resolved():
    base = RESOLVED.pop("base", None)
    RESOLVED.clear()
    if base is not None:
        base.close()


def take_resolved(req):
    """The packages of the last resolve, if `req` installs exactly them from
    the same repositories and settings; else None. The base stays loaded."""
    if "base" not in RESOLVED:
        return None
    same_settings = all(RESOLVED["req"].get(k) == req.get(k) for k in RESOLVED["req"]
                        if k not in ("action", "transaction", "installroot", "locked"))
    if not same_settings or RESOLVED["described"] != req["transaction"]:
        return None
    return RESOLVED["base"], RESOLVED["pkgs"]


def cmd_resolve(req):
    forget_resolved()
    base = setup_base(req, req["workdir"] + "/resolve-root", False)
    try:
        apply_lockfile(base, req)
        apply_excludes(base, req)
        mark_requested(base, req)
        pkgs = depsolve(base)
        described = [describe(p) for p in pkgs]
        result = {"packages": described, "repos": repo_states(base)}
    except BaseException:
        base.close()
        raise
    RESOLVED.update(base=base, pkgs=pkgs, described=described, req=req)
    return result


def cmd_download(req):
    base = setup_base(req, req["workdir"] + "/resolve-root", True)
    try:
        pkgs = mark_exact(base, req)
        download_checked(base, pkgs, req)
        return {}
    finally:
        base.close()


def cmd_locate(req):
    """Download and check the packages of the install request (as an
    install does first) and say where they are, with their rpm-md checksums,
    and whether the cached installer can install them (see
    cached_install_blocker): {"packages": [{"checksum", "rpm"}], "blocked"}.
    The caller fills its package cache from these files."""
    resolved = take_resolved(req)
    if resolved is not None:
        base, pkgs = resolved
        return locate_packages(base, pkgs, req)
    base = setup_base(req, req["workdir"] + "/resolve-root", True)
    try:
        return locate_packages(base, mark_exact(base, req), req)
    finally:
        base.close()


def locate_packages(base, pkgs, req):
    download_checked(base, pkgs, req)
    ts = rpm.TransactionSet()
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    blocked = None
    located = []
    for pkg in pkgs:
        path = pkg.localPkg()
        located.append({"checksum": checksum_repr(pkg), "rpm": path})
        if blocked is None:
            fd = os.open(path, os.O_RDONLY)
            try:
                blocked = cached_install_blocker(ts.hdrFromFdno(fd))
            except rpm.error as e:
                raise Failure("Reading the header of %s: %s" % (path, e))
            finally:
                os.close(fd)
    ts.closeDB()
    return {"packages": located, "blocked": blocked}


def cmd_install(req):
    root = req["installroot"]
    resolved = take_resolved(req)
    if resolved is not None:
        # Right after the resolve of exactly this set: its loaded metadata and
        # depsolve are reused (the rpm transaction below does not depend on
        # the base's installroot).
        base, pkgs = resolved
        return install_packages(base, pkgs, root, req)
    base = setup_base(req, root, True)
    try:
        wanted = mark_exact(base, req)
        pkgs = depsolve(base)
        extra = {str(p) for p in pkgs} - {str(p) for p in wanted}
        if extra:
            raise Failure("Installing the resolved set would pull in more packages: %s"
                          % ", ".join(sorted(extra)))
        return install_packages(base, pkgs, root, req)
    finally:
        base.close()


def install_packages(base, pkgs, root, req):
    started = time.monotonic()
    download_checked(base, pkgs, req)
    log("Packages fetched and checked in %.1fs" % (time.monotonic() - started))
    started = time.monotonic()
    if req.get("cached"):
        return plan_cached_install(root, pkgs, req)
    run_rpm_transaction(root, pkgs, req)
    log("RPM transaction done in %.1fs" % (time.monotonic() - started))
    return {}


def run(req):
    """The reply to one request: the action's result, or {"error", "class"}."""
    try:
        action = {"resolve": cmd_resolve, "download": cmd_download, "install": cmd_install, "locate": cmd_locate,
                  "scriptlet": run_planned_scriptlet, "writedb": write_planned_rpmdb}[req["action"]]
        return action(req)
    except Failure as e:
        return {"error": str(e), "class": e.cls}
    except dnf.exceptions.Error as e:
        return {"error": str(e), "class": "failed"}
    except Exception as e:
        traceback.print_exc()
        return {"error": "Internal error in the dnf helper: %s: %s" % (type(e).__name__, e),
                "class": "failed"}


def main():
    """One JSON request per line on stdin, one JSON reply per line on stdout,
    until end of input."""
    # The replies own stdout; anything else that writes to fd 1 (rpm, a
    # scriptlet, a library) goes to stderr with the other progress output.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    global REPLIES
    with os.fdopen(reply_fd, "w") as out:
        REPLIES = out
        for line in sys.stdin:
            if not line.strip():
                continue
            reply = run(json.loads(line))
            sys.stdout.flush()
            out.write(json.dumps(reply) + "\n")
            out.flush()
    forget_resolved()
    return 0


if __name__ == "__main__":
    sys.exit(main())
