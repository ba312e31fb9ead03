"""Session tickets across a key rotation, and a retired key, with real clients.

tls.session_tickets.rotate cannot be shorter than 1m (src/config/config_schema.c), so this test waits
for one real rotation (about 60 s after moat starts). Two moats run side by side so the
wait is paid once:

- memory keys (key_file: null): a ticket sealed just before the rotation still resumes
  after it (its key is kept for decryption), and in TLS 1.2 the client is handed a fresh
  ticket under the new key;
- key file: the file first holds K1 only; after a ticket under K1 was issued the file is
  rewritten to [K2, K3] and, at the rotation, moat re-reads it: the K1 ticket, still well
  within its lifetime, is no longer resumed (retired key), a K2 ticket is.

Which key sealed a ticket is read from the ticket itself: its first 16 bytes are the key
name (RFC 5077 layout as OpenSSL builds it; in key-file mode the names are ours).

Why not "after 3 rotations it does not resume" with memory keys: moat caps the session
lifetime at the rotation period (docs/tls.md "Session lifetime"), so with rotate >= 1m a
ticket has expired by age long before its key leaves the store after 3 rotations; such a
test could not tell key retirement from expiry. The key-file case removes the key within
the ticket's lifetime instead, which can.
"""

import base64
import concurrent.futures
import os
import time

import moatctl
import tlsutil
from tlsutil import s_client

ROTATE_S = 60          # the smallest period the config accepts ("1m")
FIRST_TICKET_AT = 30   # seconds after start: well before the first rotation, and young
DEADLINE = 110         # seconds after start by which the rotation must have happened


def wait_until_elapsed(t0, seconds):
    delay = t0 + seconds - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def fresh_ticket(port, path, proto="-tls1_2"):
    r = s_client(port, proto, sess_out=path, data=tlsutil.http_get())
    assert r.handshake_ok and "HTTP/1.1 200" in r.out, r
    name = tlsutil.ticket_key_name(path)
    assert name, "no ticket:\n%s" % tlsutil.session_text(path)
    return name


def wait_for_key_change(port, directory, t0, old_name, want_name=None):
    """Polls fresh tickets until their key name differs from old_name (or is want_name)."""
    wait_until_elapsed(t0, ROTATE_S - 8)
    n = 0
    while time.monotonic() < t0 + DEADLINE:
        n += 1
        path = os.path.join(directory, "poll-%d.sess" % n)
        name = fresh_ticket(port, path)
        if name != old_name and (want_name is None or name == want_name):
            return name, time.monotonic() - t0
        time.sleep(1.0)
    raise AssertionError("no ticket key rotation within %d s of the start (still %s)"
                         % (DEADLINE, old_name.hex()))


def memory_scenario(m, directory, t0):
    port = m.https_port
    wait_until_elapsed(t0, FIRST_TICKET_AT)
    a12 = os.path.join(directory, "a12.sess")
    a13 = os.path.join(directory, "a13.sess")
    k0 = fresh_ticket(port, a12)
    assert fresh_ticket(port, a13, "-tls1_3") == k0
    # the lifetime the client is told is the rotation period (sessions never outlive it)
    assert tlsutil.session_lifetime_hint(a12) == ROTATE_S
    # sealed with the current key: resumed (whether moat also hands out a fresh ticket
    # under the same key is its choice; after the rotation the fresh one must be new-key)
    r = s_client(port, "-tls1_2", sess_in=a12)
    assert r.reused is True, r
    assert r.ticket[:16] == k0, r
    issued_at = time.monotonic() - t0

    k1, rotated_at = wait_for_key_change(port, directory, t0, k0)
    # the ticket from before the rotation, sealed with the now retired key
    r = s_client(port, "-tls1_2", sess_in=a12, data=tlsutil.http_get())
    assert r.reused is True, "a ticket issued %.0f s before the rotation (at %.0f s) was not " \
        "resumed after it:\n%r" % (rotated_at - issued_at, rotated_at, r)
    assert "HTTP/1.1 200" in r.out
    assert r.ticket[:16] == k1, "TLS 1.2: no fresh ticket under the new key:\n%r" % r
    r = s_client(port, "-tls1_3", sess_in=a13, data=tlsutil.http_get())
    assert r.reused is True, r
    return rotated_at


def key_line(key):
    return base64.b64encode(key).decode()


def key_file_scenario(m, directory, t0, key_file, keys):
    k1, k2, k3 = keys
    port = m.https_port
    wait_until_elapsed(t0, FIRST_TICKET_AT)
    x12 = os.path.join(directory, "x12.sess")
    x13 = os.path.join(directory, "x13.sess")
    assert fresh_ticket(port, x12) == k1[:16], "the only key of the file must seal tickets"
    assert fresh_ticket(port, x13, "-tls1_3") == k1[:16]
    r = s_client(port, "-tls1_2", sess_in=x12)
    assert r.reused is True, r
    # retire K1: the file now holds K2 (sealing) and K3 (next); moat reads it at rotation
    tlsutil.write_atomic(key_file, "# rotated by the test\n%s\n%s\n"
                         % (key_line(k2), key_line(k3)))
    issued_at = time.monotonic() - t0

    _, reread_at = wait_for_key_change(port, directory, t0, k1[:16], want_name=k2[:16])
    age = reread_at - issued_at
    assert age < ROTATE_S - 5, "the ticket is too old (%.0f s) to tell retirement from " \
        "expiry" % age
    r = s_client(port, "-tls1_2", sess_in=x12, data=tlsutil.http_get())
    assert r.handshake_ok and "HTTP/1.1 200" in r.out, r
    assert r.reused is False, "a ticket sealed with a key removed from the key file was " \
        "resumed (%.0f s old):\n%r" % (age, r)
    r = s_client(port, "-tls1_3", sess_in=x13)
    assert r.handshake_ok and r.reused is False, r
    # a ticket under the new key resumes
    y = os.path.join(directory, "y12.sess")
    assert fresh_ticket(port, y) == k2[:16]
    r = s_client(port, "-tls1_2", sess_in=y)
    assert r.reused is True, r
    return reread_at


def test_tickets_across_rotation_and_retired_key(tmp_path):
    mem_dir = tmp_path / "memory"
    kf_dir = tmp_path / "keyfile"
    mem_dir.mkdir()
    kf_dir.mkdir()
    keys = [os.urandom(80) for _ in range(3)]
    key_file = str(kf_dir / "tickets.key")
    tlsutil.write_atomic(key_file, "# one key: it seals\n%s\n" % key_line(keys[0]))

    started = []
    try:
        up = moatctl.Upstream(tmp_path, name="app")
        started.append(up)
        up.start()
        tickets = {"rotate": "%ds" % ROTATE_S}
        mp, mcfg = moatctl.write_config(mem_dir, {"workers": 2, "tls": {
            "session_tickets": dict(tickets, key_file=None)}}, upstream_port=up.port)
        kp, kcfg = moatctl.write_config(kf_dir, {"workers": 2, "tls": {
            "session_tickets": dict(tickets, key_file=key_file)}}, upstream_port=up.port)
        mem = moatctl.Moat(mp, mcfg, tmpdir=str(mem_dir))
        kf = moatctl.Moat(kp, kcfg, tmpdir=str(kf_dir))
        t_mem = time.monotonic()
        started.append(mem)
        mem.start()
        t_kf = time.monotonic()
        started.append(kf)
        kf.start()

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            f_mem = pool.submit(memory_scenario, mem, str(mem_dir), t_mem)
            f_kf = pool.submit(key_file_scenario, kf, str(kf_dir), t_kf, key_file, keys)
            errors = []
            for name, f in (("memory keys", f_mem), ("key file", f_kf)):
                try:
                    f.result(timeout=DEADLINE + 60)
                except Exception as e:  # report both scenarios
                    errors.append("%s: %s" % (name, e))
        assert not errors, "\n\n".join(errors)
        for m in (mem, kf):
            assert m.alive(), m.stderr()
            assert "ticket key rotation" not in m.stderr(), m.stderr()
    finally:
        for p in reversed(started):
            p.stop()
