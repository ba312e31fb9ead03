"""A real syslog receiver for the tests: Debian's rsyslogd on 127.0.0.1.

Rsyslog(tmpdir, transport) writes its own config, pid file and work directory under
tmpdir/rsyslog-N and runs `rsyslogd -n -f CONF -i PIDFILE` in its own session; .stop()
ends it by PID (the `rsyslog` fixture in conftest.py calls it in a finally block).
Every message received is written twice: as it arrived (raw.log, the RFC 5424 message
without the octet-count frame) and as rsyslog parsed it (parsed.log:
facility|severity|hostname|app-name|procid|msgid|msg).
"""

import itertools
import os
import re
import subprocess

import moatctl

RSYSLOGD = "/usr/sbin/rsyslogd"
_ids = itertools.count(1)

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG (MSG: the JSON line)
RFC5424 = re.compile(r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S{1,255}) "
                     r"(\S{1,48}) (\d+) (access|audit) - (\{.*\})$")


class Rsyslog:
    def __init__(self, tmpdir, transport="tcp", port=None, certs=None):
        """transport: udp, tcp or tls; certs: {"ca", "cert", "key"} for tls."""
        self.dir = os.path.join(str(tmpdir), "rsyslog-%d" % next(_ids))
        os.makedirs(os.path.join(self.dir, "work"), exist_ok=True)
        self.transport = transport
        self.port = port or moatctl.free_port()
        self.certs = certs
        self.proc = None
        self.conf = os.path.join(self.dir, "rsyslog.conf")
        self.pidfile = os.path.join(self.dir, "rsyslog.pid")
        self.raw_path = os.path.join(self.dir, "raw.log")
        self.parsed_path = os.path.join(self.dir, "parsed.log")
        self.log_path = os.path.join(self.dir, "rsyslogd.out")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _config(self):
        g = 'global(workDirectory="%s/work" maxMessageSize="64k"' % self.dir
        if self.transport == "tls":
            g += ('\n  DefaultNetstreamDriverCAFile="%s" DefaultNetstreamDriverCertFile="%s"'
                  '\n  DefaultNetstreamDriverKeyFile="%s"'
                  % (self.certs["ca"], self.certs["cert"], self.certs["key"]))
        lines = [g + ")"]
        if self.transport == "udp":
            lines += ['module(load="imudp")',
                      'input(type="imudp" address="127.0.0.1" port="%d")' % self.port]
        elif self.transport == "tcp":
            lines += ['module(load="imtcp")',
                      'input(type="imtcp" address="127.0.0.1" port="%d")' % self.port]
        else:
            lines += ['module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
                      'StreamDriver.AuthMode="anon")',
                      'input(type="imtcp" address="127.0.0.1" port="%d")' % self.port]
        lines += [
            'template(name="raw" type="string" string="%rawmsg%\\n")',
            'template(name="parsed" type="string" string="%syslogfacility-text%|'
            '%syslogseverity-text%|%hostname%|%app-name%|%procid%|%msgid%|%msg%\\n")',
            'action(type="omfile" file="%s" template="raw")' % self.raw_path,
            'action(type="omfile" file="%s" template="parsed")' % self.parsed_path,
        ]
        return "\n".join(lines) + "\n"

    def _listening(self):
        if self.transport != "udp":
            return moatctl.listening_sockets(self.port) > 0
        try:
            with open("/proc/net/udp") as f:
                next(f)
                return any(int(line.split()[1].rsplit(":", 1)[1], 16) == self.port for line in f)
        except OSError:
            return False

    def start(self, timeout=15.0):
        with open(self.conf, "w") as f:
            f.write(self._config())
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        finally:
            out.close()
        ok = moatctl.wait_until(lambda: self._listening() or self.proc.poll() is not None,
                                timeout)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("rsyslogd did not listen on %d:\n%s"
                                 % (self.port, moatctl.read_text(self.log_path)))
        return self

    def stop(self):
        rc = moatctl.stop_process(self.proc)
        self.proc = None
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        return rc

    def raw(self):
        """The messages received so far, as they arrived (str lines)."""
        try:
            with open(self.raw_path, "r", encoding="utf-8", errors="replace") as f:
                return [l.rstrip("\n") for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def parsed(self):
        """[(facility, severity, hostname, app, procid, msgid, msg)] as rsyslog parsed them."""
        try:
            with open(self.parsed_path, "r", encoding="utf-8", errors="replace") as f:
                return [tuple(l.rstrip("\n").split("|", 6)) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def messages(self, msgid=None):
        """The RFC 5424 fields of every raw message (of msgid): [(pri, time, host, app, pid,
        msgid, msg)]; a message that does not match the format is returned as (None, line)."""
        out = []
        for line in self.raw():
            m = RFC5424.match(line)
            if not m:
                out.append((None, line))
            elif msgid is None or m.group(6) == msgid:
                out.append(m.groups())
        return out
