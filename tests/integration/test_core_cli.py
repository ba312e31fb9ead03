"""moat -V, moat -t -c FILE: versions and config validation with file:line:column."""

import os
import re

import moatctl
from moatctl import CERTS, free_port, run_moat, write_config

GOOD_YAML = """\
workers: 2
listen:
  https: ["127.0.0.1:{https}"]
  http: ["127.0.0.1:{http}"]
  admin: "127.0.0.1:{admin}"
  redirect_https_port: {https}
tls:
  certificates:
    - cert: {certs}/server.crt
      key: {certs}/server.key
upstreams:
  app:
    servers: ["127.0.0.1:{up}"]
routes:
  - match: {{ path_prefix: / }}
    auth: none
    upstream: app
limits:
  header_timeout: 10s
log:
  access: {tmp}/access.log
  audit: {tmp}/audit.log
"""


def good_yaml(tmp_path):
    return GOOD_YAML.format(https=free_port(), http=free_port(), admin=free_port(),
                            up=free_port(), certs=CERTS, tmp=tmp_path)


def write(tmp_path, name, text):
    p = os.path.join(str(tmp_path), name)
    with open(p, "w") as f:
        f.write(text)
    return p


def replace_line(text, lineno, new):
    lines = text.split("\n")
    assert lines[lineno - 1].strip(), "template changed: line %d is empty" % lineno
    lines[lineno - 1] = new
    return "\n".join(lines)


def insert_line(text, lineno, new):
    """new becomes line number lineno."""
    lines = text.split("\n")
    lines.insert(lineno - 1, new)
    return "\n".join(lines)


def project_version():
    with open(os.path.join(moatctl.REPO, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def test_version_prints_moat_and_library_versions():
    p = run_moat(["-V"])
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    low = out.lower()
    assert "moat" in low, out
    assert project_version() in out, out
    for lib in ("openssl", "libevent", "hiredis", "yaml"):
        assert lib in low, "moat -V does not mention %s:\n%s" % (lib, out)


def test_check_accepts_the_test_base_config(tmp_path):
    path, _ = write_config(tmp_path)
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_accepts_hand_written_yaml(tmp_path):
    path = write(tmp_path, "good.yaml", good_yaml(tmp_path))
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_accepts_shipped_config():
    path = os.path.join(moatctl.REPO, "conf", "moat.yaml")
    assert os.path.exists(path), "conf/moat.yaml (the annotated default) is missing"
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0, p.stdout + p.stderr


def test_relative_paths_follow_the_config_file_not_the_working_directory(tmp_path):
    """The same file passes -t from any directory: its relative certificate paths
    (../certs/dev/...) are relative to conf/, where it lives."""
    import subprocess
    for cwd in ("/", str(tmp_path), moatctl.REPO):
        for name in ("moat.yaml", os.path.join("examples", "minimal.yaml")):
            path = os.path.join(moatctl.REPO, "conf", name)
            p = subprocess.run([moatctl.moat_bin(), "-t", "-c", path], cwd=cwd,
                               capture_output=True, text=True, timeout=20)
            assert p.returncode == 0, (cwd, name, p.stdout + p.stderr)


def test_check_unknown_key_reports_file_line_column(tmp_path):
    # line 4, column 3 is where the unknown key starts
    text = insert_line(good_yaml(tmp_path), 4, "  bogus_key: 1")
    path = write(tmp_path, "bad.yaml", text)
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(r"bad\.yaml:4:3\b", out), "want bad.yaml:4:3 in:\n" + out
    assert "bogus_key" in out, out


def test_check_bad_duration_reports_its_line(tmp_path):
    text = good_yaml(tmp_path)
    lineno = text.split("\n").index("  header_timeout: 10s") + 1
    text = replace_line(text, lineno, "  header_timeout: 10 parsecs")
    path = write(tmp_path, "bad.yaml", text)
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(r"bad\.yaml:%d:\d+" % lineno, out), out
    assert "header_timeout" in out, out


def test_check_yaml_syntax_error_reports_position(tmp_path):
    text = replace_line(good_yaml(tmp_path), 3, '  https: ["127.0.0.1:8443"')
    path = write(tmp_path, "bad.yaml", text)
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(r"bad\.yaml:\d+:\d+", out), out


def test_check_reports_every_error_not_only_the_first(tmp_path):
    text = good_yaml(tmp_path)
    lineno = text.split("\n").index("  header_timeout: 10s") + 1
    text = replace_line(text, lineno, "  header_timeout: soon")
    text = insert_line(text, 4, "  bogus_key: 1")  # header_timeout moves down one line
    path = write(tmp_path, "bad.yaml", text)
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert re.search(r"bad\.yaml:4:\d+", out), out
    assert re.search(r"bad\.yaml:%d:\d+" % (lineno + 1), out), out


def test_check_route_to_unknown_upstream(tmp_path):
    text = good_yaml(tmp_path).replace("    upstream: app", "    upstream: nope")
    lineno = text.split("\n").index("    upstream: nope") + 1
    path = write(tmp_path, "bad.yaml", text)
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "nope" in out, out
    assert re.search(r"bad\.yaml:%d:\d+" % lineno, out), out


def test_check_missing_certificate_file(tmp_path):
    path, _ = write_config(tmp_path, {"tls": {"certificates": [
        {"cert": os.path.join(str(tmp_path), "missing.crt"),
         "key": os.path.join(CERTS, "server.key")}]}})
    p = run_moat(["-t", "-c", path])
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "missing.crt" in out, out


def test_check_does_not_listen(tmp_path):
    path, cfg = write_config(tmp_path)
    port = int(cfg["listen"]["https"][0].rsplit(":", 1)[1])
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0, p.stdout + p.stderr
    assert not moatctl.port_accepts(port)


def test_missing_config_file_fails(tmp_path):
    p = run_moat(["-t", "-c", os.path.join(str(tmp_path), "nope.yaml")])
    assert p.returncode == 1, p.stdout + p.stderr
    assert "nope.yaml" in p.stdout + p.stderr


def test_check_warns_about_secrets_others_can_read(tmp_path):
    """A private key or signing key readable by group or others passes -t with a warning
    naming the key's position and mode; moat also logs it at start."""
    import shutil
    key = str(tmp_path / "server.key")
    signing = str(tmp_path / "signing.key")
    shutil.copy(os.path.join(CERTS, "server.key"), key)
    with open(signing, "w") as f:
        f.write("ab" * 32 + "\n")
    os.chmod(key, 0o644)
    os.chmod(signing, 0o600)
    path, _ = write_config(tmp_path, {
        "tls": {"certificates": [{"cert": os.path.join(CERTS, "server.crt"), "key": key}]},
        "identity": {"signing_key_file": signing}})
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"moat\.yaml:\d+:\d+: tls\.certificates\[0\]\.key: warning: .*server\.key"
                     r"\" is accessible by group or others \(mode 0644\): chmod 600", p.stderr), \
        p.stderr
    assert "signing_key_file" not in p.stderr, p.stderr
    os.chmod(key, 0o600)
    p = run_moat(["-t", "-c", path])
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
