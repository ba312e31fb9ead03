"""The container image (issue 15 items 6 and 10) without a Docker engine: the Dockerfile's
runtime stage installs conf/runtime-packages.txt and checks health with
`moat --healthcheck`; that list covers every library the binary links; and a root file
system bootstrapped by mmdebstrap from the same list (Debian 12, minbase, this machine's
apt sources), prepared by the stage's own RUN steps, runs the moat under test: -V, -t, one
HTTPS request through it to an upstream, --healthcheck, and a clean stop.

Needs root (mmdebstrap --mode=root, chroot) and the package archive; it skips only when
the archive cannot be reached. It also runs inside ../shared/fresh-machine-test.sh's
chroot. About 20-40 s, mostly the bootstrap; nothing is cached between runs."""

import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import moatctl
from moatctl import CERTS, REPO, curl, free_port, listening_sockets, stop_process, wait_until

PACKAGES = os.path.join(REPO, "conf", "runtime-packages.txt")
DOCKERFILE = os.path.join(REPO, "Dockerfile")
SUITE = "bookworm"
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def runtime_packages():
    with open(PACKAGES) as f:
        return [w for line in f for w in line.split("#", 1)[0].split()]


def runtime_stage():
    """The instructions of the Dockerfile's last stage, continuation lines joined:
    [(INSTRUCTION, arguments)]."""
    with open(DOCKERFILE) as f:
        text = re.sub(r"\\\n", " ", f.read())
    lines = [ln.strip() for ln in text.split("\n") if ln.strip() and not ln.strip()[0] == "#"]
    last = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return [tuple((ln.split(None, 1) + [""])[:2]) for ln in lines[last + 1:]]


# ---- the Dockerfile and the package list ------------------------------------------------

def test_dockerfile_installs_the_list_and_checks_health():
    stage = runtime_stage()
    copies = [a for i, a in stage if i == "COPY"]
    assert "conf/runtime-packages.txt /tmp/runtime-packages.txt" in copies, copies
    runs = [a for i, a in stage if i == "RUN"]
    assert any("apt-get install" in r and "/tmp/runtime-packages.txt" in r for r in runs), runs
    health = [a for i, a in stage if i == "HEALTHCHECK"]
    assert len(health) == 1 and health[0].endswith(
        'CMD ["moat", "--healthcheck", "-c", "/etc/moat/moat.yaml"]'), health
    entry = [a for i, a in stage if i == "ENTRYPOINT"]
    assert entry == ['["moat", "-c", "/etc/moat/moat.yaml"]'], entry


def test_build_stage_has_every_library_install_deps_builds_with():
    """The -dev packages scripts/install-deps.sh installs for the build are in the
    Dockerfile's build stage too (a library added to one and not the other breaks
    `docker build`)."""
    with open(os.path.join(REPO, "scripts", "install-deps.sh")) as f:
        base = re.search(r"^pkgs=\(([^)]*)\)", f.read(), re.M).group(1).split()
    with open(DOCKERFILE) as f:
        build = re.split(r"^FROM ", f.read(), flags=re.M)[1]  # the first stage
    missing = [p for p in base if p.startswith("lib") and p.endswith("-dev")
               and not re.search(r"\s%s\s" % re.escape(p), build)]
    assert not missing, "not in the Dockerfile's build stage: %s" % " ".join(missing)


def test_package_list_covers_every_library_the_binary_links():
    """Each shared library moat needs directly (ELF NEEDED) comes from a listed package,
    or from libc6 (every Debian root has it)."""
    binary = moatctl.moat_bin()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True,
                                       text=True, check=True).stdout)
    assert needed, "readelf found no NEEDED entries in %s" % binary
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    listed = set(runtime_packages()) | {"libc6"}
    missing = []
    for lib in needed:
        path = where.get(lib)
        if lib.startswith("ld-linux") or path is None and lib.startswith("libc.so"):
            continue
        assert path, "ldd did not resolve %s:\n%s" % (lib, ldd)
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True,
                               text=True)
        if owner.returncode != 0:  # /lib -> /usr/lib: dpkg knows one spelling
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        pkg = owner.stdout.split(":", 1)[0].strip()
        if pkg not in listed:
            missing.append("%s (%s)" % (lib, pkg or owner.stderr.strip()))
    assert not missing, "not in conf/runtime-packages.txt: %s" % ", ".join(missing)


# ---- the runtime root file system --------------------------------------------------------

def apt_sources():
    """This machine's Debian apt sources, as ../shared/fresh-machine-test.sh picks them."""
    out = []
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]:
        try:
            if os.path.getsize(f) and "debian" in open(f).read():
                out.append(f)
        except OSError:
            pass
    return out


def archive_reachable(sources):
    """(True, "") when the first source's Release file downloads (through apt, so with
    its proxy settings), else (False, why)."""
    text = open(sources[0]).read()
    m = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(
        r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
    if not m:
        return True, ""  # let mmdebstrap say what it makes of it
    url = m.group(1).rstrip("/") + "/dists/%s/InRelease" % SUITE
    d = os.path.join("/tmp", "moat-archive-probe-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    try:
        p = subprocess.run(["/usr/lib/apt/apt-helper", "download-file", url,
                            os.path.join(d, "InRelease")], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        return p.returncode == 0, (p.stdout + p.stderr).strip()[-500:]
    except subprocess.TimeoutExpired:
        return False, "no answer within 60 s from %s" % url
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mounts_under(path):
    """Mount points at or below path (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def remove_root(root):
    """Unmounts whatever a killed mmdebstrap left mounted below root, then deletes it;
    never deletes through a mount that would not go away (it could be the host's /dev)."""
    for mp in mounts_under(root):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if os.path.exists(root) and not mounts_under(root):
        shutil.rmtree(root, ignore_errors=True)


def bootstrap(root, log_path):
    """mmdebstrap minbase + the runtime packages into root; returns seconds taken."""
    sources = apt_sources()
    assert sources, "no Debian apt sources in /etc/apt (the bootstrap uses this machine's)"
    ok, why = archive_reachable(sources)
    if not ok:
        pytest.skip("the Debian package archive cannot be reached: %s" % why)
    assert shutil.which("mmdebstrap"), "mmdebstrap not found (scripts/install-deps.sh --test)"
    cmd = ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase",
           "--include=" + ",".join(runtime_packages()),
           "--aptopt=Acquire::Retries \"3\"",
           # as bookworm-slim: no documentation, manual pages or translations
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           SUITE, root] + sources
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=600)
        finally:
            # a timeout or a failed test: SIGTERM lets mmdebstrap unmount what it mounted
            stop_process(p, sig=signal.SIGTERM, timeout=30)
    out = moatctl.read_text(log_path)
    if rc != 0 and re.search(r"Temporary failure resolving|Could not resolve|Unable to connect|"
                             r"Failed to fetch|Connection timed out|Network is unreachable", out):
        pytest.skip("the Debian package archive cannot be reached:\n%s" % out[-1500:])
    assert rc == 0, "mmdebstrap failed (%s):\n%s" % (rc, out[-4000:])
    return time.monotonic() - t0


def in_root(root, *args, user=None, cwd="/etc/moat", timeout=60):
    """Runs a command in the root (chroot; cwd /etc/moat, the image's WORKDIR)."""
    cmd = ["chroot"] + (["--userspec=%s" % user] if user else []) + [
        root, "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd] + list(args)
    return subprocess.run(cmd, env=CHROOT_ENV, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def prepare_image(root):
    """What the Dockerfile's runtime stage does after the package install: its other RUN
    steps as written, then its COPY of the binary (the one under test, not stripped)."""
    for inst, arg in runtime_stage():
        if inst == "RUN" and "apt-get" not in arg:
            p = in_root(root, "/bin/sh", "-c", arg, cwd="/")  # as docker build runs it
            assert p.returncode == 0, "Dockerfile RUN %s\n%s%s" % (arg, p.stdout, p.stderr)
    dst = os.path.join(root, "usr", "local", "bin", "moat")
    shutil.copy2(moatctl.moat_bin(), dst)
    os.chmod(dst, 0o755)


def image_user(root):
    """(uid, gid) of the Dockerfile's user moat in the root (USER moat in the image)."""
    with open(os.path.join(root, "etc", "passwd")) as f:
        for line in f:
            name, _, uid, gid = line.split(":")[:4]
            if name == "moat":
                return int(uid), int(gid)
    raise AssertionError("the Dockerfile's RUN steps created no user moat")


def write_image_config(root, upstream_port):
    """A minimal /etc/moat/moat.yaml as an operator would mount it: certificates relative
    to /etc/moat, the default log places (access stdout, audit /var/log/moat)."""
    for name in ("server.crt", "server.key"):
        dst = os.path.join(root, "etc", "moat", "certs", name)
        shutil.copy(os.path.join(CERTS, name), dst)
        os.chown(dst, *image_user(root))
        os.chmod(dst, 0o600)
    https, http, admin = free_port(), free_port(), free_port()
    with open(os.path.join(root, "etc", "moat", "moat.yaml"), "w") as f:
        f.write("""workers: 1
listen:
  https: ["127.0.0.1:%d"]
  http: ["127.0.0.1:%d"]
  admin: "127.0.0.1:%d"
  redirect_https_port: %d
tls:
  certificates:
    - cert: certs/server.crt
      key: certs/server.key
upstreams:
  app:
    servers: ["127.0.0.1:%d"]
routes:
  - match: { path_prefix: / }
    auth: none
    upstream: app
limits:
  drain_timeout: 5s
""" % (https, http, admin, https, upstream_port))
    return https


def test_runtime_root_runs_moat(tmp_path, upstream):
    if os.geteuid() != 0:
        pytest.fail("needs root: mmdebstrap --mode=root and chroot build and enter the image's "
                    "root file system")
    root = str(tmp_path / "root")
    proc = None
    t0 = time.monotonic()
    try:
        took = bootstrap(root, str(tmp_path / "mmdebstrap.log"))
        prepare_image(root)
        user = "%d:%d" % image_user(root)

        p = in_root(root, "moat", "-V", user=user)
        assert p.returncode == 0 and "nghttp2" in p.stdout, p.stdout + p.stderr
        p = in_root(root, "ldd", "/usr/local/bin/moat")
        assert "not found" not in p.stdout, p.stdout

        up = upstream("app")
        https = write_image_config(root, up.port)
        p = in_root(root, "moat", "-t", "-c", "/etc/moat/moat.yaml", user=user)
        assert p.returncode == 0, p.stdout + p.stderr

        out = open(tmp_path / "image-moat.out", "wb")
        proc = subprocess.Popen(
            ["chroot", "--userspec=" + user, root, "/bin/sh", "-c",
             "cd /etc/moat && exec moat -c /etc/moat/moat.yaml"],
            env=CHROOT_ENV, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        log = lambda: moatctl.read_text(str(tmp_path / "image-moat.out"))  # noqa: E731
        assert wait_until(lambda: listening_sockets(https) > 0 or proc.poll() is not None, 10)
        assert proc.poll() is None, "moat exited %s in the image:\n%s" % (proc.returncode, log())

        r = curl(https, "/echo", tmpdir=str(tmp_path))
        assert r.status == 200, r
        assert wait_until(lambda: "ready" == in_root(root, "moat", "--healthcheck", "-c",
                                                     "/etc/moat/moat.yaml",
                                                     user=user).stdout.strip(), 5), log()
        audit = os.path.join(root, "var", "log", "moat", "audit.log")
        assert os.path.getsize(audit) > 0, "no audit events in /var/log/moat/audit.log"

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0, log()
        p = in_root(root, "moat", "--healthcheck", "-c", "/etc/moat/moat.yaml", user=user)
        assert p.returncode == 1 and "refused" in p.stderr, p.stdout + p.stderr
        print("container root: bootstrap %.1f s, whole test %.1f s"
              % (took, time.monotonic() - t0))
    finally:
        stop_process(proc, sig=signal.SIGTERM, timeout=10)
        remove_root(root)
