"""Redis for the integration tests: the one RESP client, redis-server processes, a fake
Redis that misbehaves, and the one session writer.

Standard library only; builds on moatctl (ports, processes).

- RESP: encode() a command; parse() one reply from bytes; read_reply() reads from a
  socket until one complete reply is parsed (bounded in time and size); call() /
  call_many() run commands on a fresh connection (plain or TLS, with AUTH). An error
  reply is a RespError (an Exception): raised by call(), returned in call_many()'s list
  so that a pipeline's replies stay in line with its commands.
- The ACL: acl_rules() reads a user's rules from conf/redis-acl.conf; every RedisServer
  (cluster nodes and sentinel-monitored servers too) starts with its user `moat`, every
  Sentinel with `moat-sentinel`, password MOAT_PASSWORD in a file, and registers them in
  moatctl.REDIS_ACL so that the moat configs the tests write log in as them.
- RedisServer: `redis-server --bind 127.0.0.1 --save '' --appendonly no`, in its own
  session, stopped by PID; optional requirepass, extra arguments, a TLS-only listener.
- Sentinel, SentinelSet: a master, a replica and three sentinels (quorum 2), each
  stopped by PID.
- RedisCluster: N cluster masters joined with redis-cli --cluster create, each stopped
  by PID; slot helpers and a by-hand slot migration.
- FakeRedis: a TCP server in threads of the test process that speaks bad Redis.
- put_session(): a session as the login service writes it (DESIGN.md, "Sessions").
"""

import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import moatctl

# ---- RESP ---------------------------------------------------------------------------

MAX_REPLY = 16 << 20  # bytes read for one reply at the most (a test never needs more)


class RespError(Exception):
    """An error reply (-ERR ..., -WRONGPASS ..., -NOPERM ...); str() is its text."""


class Incomplete(Exception):
    """parse(): the bytes end before the reply does."""


def encode(args):
    """One command (a list of str, bytes or numbers) as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse(buf, i=0):
    """Parses one RESP2 value from buf at i; returns (value, index after it).

    +simple -> str, -error -> RespError (returned, not raised), :int -> int,
    $bulk -> bytes ($-1 -> None), *array -> list (*-1 -> None).
    Raises Incomplete when buf ends first, ValueError when it is not RESP."""
    start = i
    j = buf.find(b"\r\n", i)
    if j < 0:
        raise Incomplete()
    kind, line = buf[i:i + 1], bytes(buf[i + 1:j])
    i = j + 2
    if kind == b"+":
        return line.decode(), i
    if kind == b"-":
        return RespError(line.decode()), i
    if kind == b":":
        return int(line), i
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, i
        if len(buf) < i + n + 2:
            raise Incomplete()
        if buf[i + n:i + n + 2] != b"\r\n":
            raise ValueError("bulk string of %d bytes not followed by CRLF" % n)
        return bytes(buf[i:i + n]), i + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, i
        out = []
        for _ in range(n):
            v, i = parse(buf, i)
            out.append(v)
        return out, i
    raise ValueError("not a RESP reply at %d: %r" % (start, bytes(buf[start:start + 80])))


class Reader:
    """Reads whole replies from a socket: recv() until parse() completes, at most
    max_bytes buffered and timeout seconds per reply."""

    def __init__(self, sock, timeout=5.0, max_bytes=MAX_REPLY):
        self.sock = sock
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.buf = bytearray()

    def read(self):
        deadline = time.monotonic() + self.timeout
        while True:
            if self.buf:
                try:
                    v, i = parse(self.buf)
                except Incomplete:
                    pass
                else:
                    del self.buf[:i]
                    return v
            if len(self.buf) > self.max_bytes:
                raise ValueError("no complete reply within %d bytes: %r"
                                 % (self.max_bytes, bytes(self.buf[:200])))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete reply within %.1fs; had %r"
                                   % (self.timeout, bytes(self.buf[:200])))
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection; had %r"
                                      % bytes(self.buf[:200]))
            self.buf += data


def read_reply(sock, timeout=5.0, max_bytes=MAX_REPLY):
    """One complete reply from sock (see Reader)."""
    return Reader(sock, timeout, max_bytes).read()


def _connect(redis, timeout):
    """A connection to redis (anything with .port; TLS when it has .tls_ca)."""
    s = socket.create_connection(("127.0.0.1", redis.port), timeout=timeout)
    ca = getattr(redis, "tls_ca", None)
    if ca:
        try:
            s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
        except Exception:
            s.close()
            raise
    return s


def call_many(redis, commands, timeout=5.0, user=None, password=None):
    """Runs commands (lists of args) pipelined on one fresh connection; returns the
    replies, an error reply as a RespError object in its place. Authenticates first with
    password (default: redis.password, the admin's), as user if given; a refused AUTH is
    raised."""
    password = password if password is not None else getattr(redis, "password", None)
    pre = []
    if password:
        pre = [["AUTH", user, password] if user else ["AUTH", password]]
    with _connect(redis, timeout) as s:
        s.sendall(b"".join(encode(c) for c in pre + list(commands)))
        reader = Reader(s, timeout)
        replies = [reader.read() for _ in range(len(pre) + len(commands))]
    for r in replies[:len(pre)]:
        if isinstance(r, RespError):
            raise r
    return replies[len(pre):]


def call(redis, *args, timeout=5.0):
    """One command on a fresh connection; its reply. An error reply is raised (RespError)."""
    r = call_many(redis, [args], timeout=timeout)[0]
    if isinstance(r, RespError):
        raise r
    return r


# ---- the ACL ---------------------------------------------------------------------------

ACL_FILE = os.path.join(moatctl.REPO, "conf", "redis-acl.conf")
MOAT_USER = "moat"               # on every data node
SENTINEL_USER = "moat-sentinel"  # on every sentinel
MOAT_PASSWORD = "moat-acl-test-pw"  # both users', in each server's moat.pw


def acl_rules(user, password=MOAT_PASSWORD, without=(), path=ACL_FILE):
    """The rules of user in conf/redis-acl.conf: its `ACL SETUSER <user> ...` lines'
    arguments, in order, PASSWORD replaced by password. without: rules to leave out
    (a test of a missing permission, e.g. ["+evalsha"])."""
    rules = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if words[:3] == ["ACL", "SETUSER", user]:
                rules += [">" + password if w == ">PASSWORD" else w for w in words[3:]]
    assert rules, "no ACL SETUSER %s lines in %s" % (user, path)
    missing = [w for w in without if w not in rules]
    assert not missing, "%r not in %s's rules" % (missing, user)
    return [w for w in rules if w not in without]


def _write_password(directory, password=MOAT_PASSWORD):
    path = os.path.join(directory, "moat.pw")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    return path


# ---- redis-server -------------------------------------------------------------------

class RedisServer:
    """A redis-server on 127.0.0.1 in its own directory, started in its own session and
    stopped by PID.

    password: requirepass of the default user (call() authenticates with it).
    args: more redis-server arguments (e.g. ["--maxclients", "3"]).
    tls: {"cert", "key", "ca"}: TLS only (--port 0 --tls-port N), clients not asked for
      certificates; call() then verifies the server against tls["ca"].
    moat_waits: a moat configured with this server waits at start until each worker has
      connected to it (moatctl.LIVE_REDIS); False for servers moat may fail to use.
    acl_without: rules of conf/redis-acl.conf's user `moat` left out (a test of a missing
      permission). The user is created at start (--user), so a restarted server has it
      before any client connects; .moat_password_file holds its password."""

    def __init__(self, tmpdir, port=None, args=(), password=None, tls=None, moat_waits=True,
                 acl_without=()):
        self.port = port or moatctl.free_port()
        self.dir = os.path.join(str(tmpdir), "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.args = list(args)
        self.password = password
        self.tls = tls
        self.tls_ca = tls["ca"] if tls else None
        self.moat_waits = moat_waits
        self.acl_without = list(acl_without)
        self.moat_password_file = _write_password(self.dir)
        self.proc = None
        self.out = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def moat_credentials(self):
        """redis.username and redis.password_file for conf/redis-acl.conf's user."""
        return {"username": MOAT_USER, "password_file": self.moat_password_file}

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server")
        if not exe:
            raise AssertionError("redis-server not installed (scripts/install-deps.sh)")
        cmd = [exe, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self.port),
                    "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                    "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"]
        else:
            cmd += ["--port", str(self.port)]
        if self.password:
            cmd += ["--requirepass", self.password]
        cmd += ["--user", MOAT_USER] + acl_rules(MOAT_USER, without=self.acl_without)
        cmd += self.args
        self.out = open(os.path.join(self.dir, "redis.out"), "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not moatctl.wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout) \
                or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("redis-server did not start:\n"
                                 + moatctl.read_text(os.path.join(self.dir, "redis.out")))
        if self.moat_waits:
            moatctl.LIVE_REDIS.add(self.addr)
        moatctl.REDIS_ACL[self.addr] = self.moat_credentials
        return self

    def ping(self):
        try:
            return call(self, "PING", timeout=0.5) == "PONG"
        except (OSError, RespError, ValueError):  # ConnectionError, TimeoutError, SSLError
            return False

    def _close_out(self):
        if self.out is not None:
            self.out.close()
            self.out = None

    def stop(self):
        moatctl.LIVE_REDIS.discard(self.addr)
        moatctl.REDIS_ACL.pop(self.addr, None)
        rc = moatctl.stop_process(self.proc, sig=signal.SIGTERM, timeout=5)
        self._close_out()
        return rc

    def kill(self):
        """SIGKILL by PID: no goodbye to its clients."""
        rc = moatctl.stop_process(self.proc, sig=signal.SIGKILL, timeout=5)
        self._close_out()
        return rc

    def restart(self):
        """Starts a fresh redis-server on the same port (empty: sessions must be re-put)."""
        self.kill()
        return self.start()


class Sentinel(RedisServer):
    """A Redis Sentinel (`redis-server FILE --sentinel`) on 127.0.0.1 monitoring a master
    under `name`, in its own directory (sentinels rewrite their config file), started in
    its own session and stopped by PID. call() works against it (SENTINEL ...)."""

    def __init__(self, tmpdir, master, name="mymaster", quorum=2, down_after_ms=1000,
                 failover_timeout_ms=3000):
        super().__init__(tmpdir, moat_waits=False)
        self.master_port = master.port
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server")
        if not exe:
            raise AssertionError("redis-server not installed (scripts/install-deps.sh)")
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (self.port, self.dir))
            f.write("sentinel monitor %s 127.0.0.1 %d %d\n"
                    % (self.name, self.master_port, self.quorum))
            f.write("sentinel down-after-milliseconds %s %d\n" % (self.name, self.down_after_ms))
            f.write("sentinel failover-timeout %s %d\n" % (self.name, self.failover_timeout_ms))
            f.write("sentinel parallel-syncs %s 1\n" % self.name)
            f.write("user %s %s\n" % (SENTINEL_USER, " ".join(acl_rules(SENTINEL_USER))))
        self.out = open(os.path.join(self.dir, "redis.out"), "ab")
        self.proc = subprocess.Popen([exe, conf, "--sentinel"], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if not moatctl.wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout) \
                or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("redis sentinel did not start:\n"
                                 + moatctl.read_text(os.path.join(self.dir, "redis.out")))
        moatctl.REDIS_ACL[self.addr] = {
            "sentinel": {"username": SENTINEL_USER, "password_file": self.moat_password_file},
            "data": self.moat_credentials}
        return self

    def master_addr(self):
        """("127.0.0.1", port) as this sentinel sees the master now, or None."""
        r = call(self, "SENTINEL", "get-master-addr-by-name", self.name, timeout=1.0)
        return (r[0].decode(), int(r[1])) if r else None

    def log(self):
        return moatctl.read_text(os.path.join(self.dir, "redis.out"))


def _info_field(info, field):
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


class SentinelSet:
    """A master, a replica (`--replicaof`) and n sentinels (quorum 2) on 127.0.0.1.

    start() waits until the replica is in sync and every sentinel knows the replica and
    the other sentinels, so that a failover can be asked for at once. stop() stops every
    process by PID (also when start() failed half-way). .servers maps port ->
    RedisServer, .master() is the server the sentinels name master now."""

    def __init__(self, tmpdir, name="mymaster", sentinels=3, down_after_ms=1000,
                 failover_timeout_ms=3000):
        self.name = name
        self.primary = RedisServer(tmpdir, moat_waits=False)
        self.replica = RedisServer(tmpdir, moat_waits=False)
        self.sentinels = [Sentinel(tmpdir, self.primary, name, 2, down_after_ms,
                                   failover_timeout_ms) for _ in range(sentinels)]
        self.servers = {self.primary.port: self.primary, self.replica.port: self.replica}

    @property
    def addresses(self):
        return [s.addr for s in self.sentinels]

    def start(self, timeout=30.0):
        try:
            self.primary.start()
            self.replica.args = ["--replicaof", "127.0.0.1", str(self.primary.port)]
            self.replica.start()
            for s in self.sentinels:
                s.start()
            assert moatctl.wait_until(self.ready, timeout, interval=0.2), \
                "sentinels not ready:\n" + "\n".join(s.log()[-2000:] for s in self.sentinels)
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self):
        """Replica in sync; each sentinel sees the master, the replica and the others."""
        try:
            if _info_field(call(self.replica, "INFO", "replication"),
                           "master_link_status") != "up":
                return False
            for s in self.sentinels:
                if s.master_addr() != ("127.0.0.1", self.primary.port):
                    return False
                if len(call(s, "SENTINEL", "sentinels", self.name)) < len(self.sentinels) - 1:
                    return False
                reps = call(s, "SENTINEL", "replicas", self.name)
                if not reps or b"s_down" in b" ".join(x for r in reps for x in r
                                                       if isinstance(x, bytes)):
                    return False
            return True
        except (OSError, RespError, ValueError):
            return False

    def master(self):
        """The RedisServer the first live sentinel names master (None if none answers)."""
        for s in self.sentinels:
            try:
                a = s.master_addr()
            except (OSError, RespError, ValueError):
                continue
            if a:
                return self.servers.get(a[1])
        return None

    def agreed_master(self):
        """The server every live sentinel names master, when they agree and it says ROLE
        master; else None."""
        seen = set()
        for s in self.sentinels:
            if s.proc is None or s.proc.poll() is not None:
                continue
            try:
                a = s.master_addr()
            except (OSError, RespError, ValueError):
                return None
            seen.add(a)
        if len(seen) != 1:
            return None
        srv = self.servers.get(next(iter(seen))[1])
        try:
            return srv if srv is not None and call(srv, "ROLE", timeout=1.0)[0] == b"master" \
                else None
        except (OSError, RespError, ValueError):
            return None

    def stop(self):
        for p in self.sentinels + [self.replica, self.primary]:
            if p.proc is not None and p.proc.poll() is None:
                try:
                    os.kill(p.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            if p.proc is not None:
                p.stop()


class RedisCluster:
    """A Redis Cluster of `masters` masters, each with `replicas` replicas, on 127.0.0.1:
    each node a RedisServer with --cluster-enabled yes in its own directory, joined with
    `redis-cli --cluster create --cluster-replicas N`, ready once every node says
    cluster_state:ok, agrees on the slot map, and every replica is in sync with its
    master (ROLE: connected). .nodes holds every node (the first `masters` are the
    masters at creation); .masters() / .replica_of() say who is what now. stop() stops
    every node by PID (also when a test stopped (SIGSTOP) or killed some of them)."""

    def __init__(self, tmpdir, masters=3, replicas=0, node_timeout_ms=2000):
        self.nodes = []
        self.replicas = replicas
        for _ in range(masters * (1 + replicas)):
            r = RedisServer(tmpdir, moat_waits=False)
            # the bus port explicitly: port + 10000 may be taken, or above 65535
            r.args = ["--cluster-enabled", "yes", "--cluster-config-file",
                      "nodes-%d.conf" % r.port, "--cluster-port", str(moatctl.free_port()),
                      "--cluster-node-timeout", str(node_timeout_ms)]
            self.nodes.append(r)

    @property
    def seeds(self):
        return [n.addr for n in self.nodes]

    def start(self, timeout=30.0):
        exe = shutil.which("redis-cli")
        if not exe:
            raise AssertionError("redis-cli not installed (scripts/install-deps.sh)")
        try:
            for n in self.nodes:
                n.start()
            out = subprocess.run([exe, "--cluster", "create"] + self.seeds +
                                 ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
            assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
            assert moatctl.wait_until(self.ready, timeout, interval=0.1), \
                "cluster not ready: %r" % [self._info(n) for n in self.nodes]
        except BaseException:
            self.stop()
            raise
        return self

    def role(self, node):
        """ROLE of node: ["master", offset, replicas] or ["slave", ip, port, state, offset];
        None when it does not answer."""
        try:
            r = call(node, "ROLE", timeout=1.0)
        except (OSError, RespError, ValueError):
            return None
        return [x.decode() if isinstance(x, bytes) else x for x in r]

    def alive(self):
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def masters(self):
        """The live nodes that say they are masters (ROLE)."""
        return [n for n in self.alive() if (self.role(n) or [None])[0] == "master"]

    def replica_of(self, master):
        """A live replica of master (ROLE names its port), or None."""
        for n in self.alive():
            r = self.role(n)
            if r and r[0] == "slave" and int(r[2]) == master.port:
                return n
        return None

    def replicas_in_sync(self):
        """Every live replica's link to its master is up and the initial sync is done."""
        for n in self.alive():
            r = self.role(n)
            if r is None or (r[0] == "slave" and r[3] != "connected"):
                return False
        return True

    def _info(self, node):
        try:
            text = call(node, "CLUSTER", "INFO", timeout=1.0)
        except (OSError, RespError, ValueError):
            return ""
        return text.decode() if isinstance(text, bytes) else text

    def ready(self):
        """Every live node: cluster_state:ok and the same full slot map; replicas in sync."""
        nodes = self.alive()
        if not all("cluster_state:ok" in self._info(n) for n in nodes):
            return False
        try:
            maps = [self.slot_map(n) for n in nodes]
        except (OSError, RespError, ValueError):
            return False
        return all(m == maps[0] for m in maps) and len(maps[0]) == 16384 and \
            self.replicas_in_sync()

    def slot_map(self, node=None):
        """{slot: port of its master} as node (default: the first live one) sees it."""
        out = {}
        for start, end, master, *_ in call(node or self.alive()[0], "CLUSTER", "SLOTS"):
            for s in range(start, end + 1):
                out[s] = master[1]
        return out

    def node_id(self, node):
        v = call(node, "CLUSTER", "MYID")
        return v.decode() if isinstance(v, bytes) else v

    def keyslot(self, key):
        return call(self.alive()[0], "CLUSTER", "KEYSLOT", key)

    def node_for(self, key):
        """The master serving key's slot now."""
        port = self.slot_map()[self.keyslot(key)]
        return next(n for n in self.nodes if n.port == port)

    def call(self, *args, key):
        """A command on the master of key's slot."""
        return call(self.node_for(key), *args)

    def move_slot(self, slot, dst, between=None):
        """Moves slot (and its keys) to node dst by hand, as redis-cli --cluster reshard
        does: IMPORTING on dst, MIGRATING on the source, MIGRATE each key, then SETSLOT
        NODE everywhere. between(): called after the keys moved and before the slot is
        handed over (while the source answers -ASK for them)."""
        port = self.slot_map()[slot]
        src = next(n for n in self.nodes if n.port == port)
        assert src is not dst
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = call(src, "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            call(src, "MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
        if between:
            between()
        for n in [dst, src] + [n for n in self.nodes if n not in (src, dst)]:
            call(n, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def stop(self):
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                try:
                    os.kill(n.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            if n.proc is not None:
                n.stop()


def client_list(redis):
    """The other clients connected to redis (CLIENT LIST, without this one): dicts."""
    text = call(redis, "CLIENT", "LIST")
    text = text.decode() if isinstance(text, bytes) else text
    out = []
    for line in text.splitlines():
        c = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if c.get("cmd") != "client|list":
            out.append(c)
    return out


def client_names(redis):
    return [c.get("name", "") for c in client_list(redis)]


# ---- a misbehaving Redis --------------------------------------------------------------

class FakeRedis:
    """A TCP server on 127.0.0.1 (threads of this process) that speaks bad Redis.

    mode:
      "silent"     accepts, reads, never answers anything
      "blackhole"  answers the handshake (AUTH, SELECT, CLIENT *, PING), never HGETALL
      "garbage"    answers every command with `garbage` (bytes)
      "ok"         answers every command with +OK (a well-formed but wrong reply)
      "scripted"   the blackhole handshake; a command named in .replies (upper-case
                   bytes -> reply bytes, changeable while running) gets that reply
    Every connection is counted in .connections; stop() closes everything."""

    def __init__(self, mode, garbage=b"", replies=None):
        self.mode = mode
        self.garbage = garbage
        self.replies = dict(replies or {})
        self.connections = 0
        self.commands = []
        self._socks = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.settimeout(0.2)
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buf += data
                cmds, buf = self._split(buf)
                out = b"".join(self._answer(c) for c in cmds)
                if out:
                    s.sendall(out)
        except OSError:
            return

    @staticmethod
    def _split(buf):
        """Complete RESP commands (arrays of bulk strings) at the head of buf."""
        cmds = []
        while buf.startswith(b"*"):
            try:
                args, i = parse(buf)
            except (Incomplete, ValueError):
                break
            cmds.append(args or [])
            buf = buf[i:]
        return cmds, buf

    def _answer(self, args):
        name = args[0].upper() if args else b""
        with self._lock:
            self.commands.append([a.decode("latin-1") for a in args])
        if self.mode == "silent":
            return b""
        if self.mode == "garbage":
            return self.garbage
        if self.mode == "ok":
            return b"+OK\r\n"
        if self.mode == "scripted" and name in self.replies:
            return self.replies[name]
        # blackhole: a plausible handshake, then nothing for data commands
        if name in (b"AUTH", b"SELECT", b"PING"):
            return b"+PONG\r\n" if name == b"PING" else b"+OK\r\n"
        if name == b"CLIENT":
            sub = args[1].upper() if len(args) > 1 else b""
            return b":7\r\n" if sub == b"ID" else b"+OK\r\n"
        return b""

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass
        self._thread.join(timeout=5)


# ---- sessions -----------------------------------------------------------------------

PREFIX = "moat:sess:"        # sessions.key_prefix's default
SESSION_LIFETIME = 3600      # seconds: put_session's default exp is now + this
_DEFAULT_EXP = object()


def new_token(n=32):
    """A fresh random token in the accepted alphabet (base64url)."""
    return secrets.token_urlsafe(n)


def session_key(token, prefix=PREFIX):
    """`<prefix><hex sha256(token)>`: where the login service keeps token's session."""
    return prefix + hashlib.sha256(token.encode()).hexdigest()


def _flag(v):
    if v is True or v is False:
        return "1" if v else "0"
    return str(v)


def put_session(redis, token=None, tenant="acme", user="user-1", mfa=0, exp=_DEFAULT_EXP,
                roles=None, prefix=PREFIX, ttl=None):
    """Writes a session the way the login service does (DESIGN.md, "Sessions"); returns
    the token (token, or a fresh new_token()).

    The key is session_key(token, prefix) (`moat:sess:<hex sha256(token)>`), replaced as a
    whole (DEL, then HSET), a hash of:
      tenant  default "acme"
      user    default "user-1"
      mfa     default 0; True/False become "1"/"0", anything else is written as given
      exp     unix seconds, default now + SESSION_LIFETIME; None writes no exp field
      roles   only when given
    ttl: seconds for EXPIRE on the key (default: none). An error reply is raised."""
    token = token or new_token()
    if exp is _DEFAULT_EXP:
        exp = time.time() + SESSION_LIFETIME
    fields = ["tenant", tenant, "user", user, "mfa", _flag(mfa)]
    if roles is not None:
        fields += ["roles", roles]
    if exp is not None:
        fields += ["exp", str(int(exp))]
    key = session_key(token, prefix)
    cmds = [["DEL", key], ["HSET", key] + fields]
    if ttl:
        cmds.append(["EXPIRE", key, str(ttl)])
    for r in call_many(redis, cmds):
        if isinstance(r, RespError):
            raise r
    return token


def delete_session(redis, token, prefix=PREFIX):
    return call(redis, "DEL", session_key(token, prefix))
