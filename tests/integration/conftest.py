"""Harness of the integration tests: the real daemon, real sockets.

Run by tests/run-integration inside a private network namespace (unshare -n),
as root. Fixtures:

  sink          a real receiving SMTP server (sink.py) on 127.0.0.1, free port
  daemon        the daemon, started on a fresh jail, relaying to `sink`;
                per-test configuration with @pytest.mark.conf(key=value, ...)
  start_daemon  factory: start_daemon(**conf) -> another Daemon (same sink)
  smtp          factory: smtp(port=None) -> Client (raw sockets) to the daemon

Helpers importable by the tests: Client, Reply, Daemon, stuff, make_message,
free_port, wait_until.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from sink import Sink

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("JAILMAIL_BUILD") or os.path.join(REPO, "build")
RUN_AS_USER = "jailmail"
RUN_AS_GROUP = "mail"
HOSTNAME = "mx.jailmail.test"

# Slow builds (sanitizers) start and answer more slowly.
SLOW = "asan" in BUILD or bool(os.environ.get("ASAN_OPTIONS"))
START_TIMEOUT = 30.0 if SLOW else 15.0

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")

CRLF = b"\r\n"


# ----------------------------------------------------------------- helpers
def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def parse_time(v):
    """'10s', '5m', '2h', '1d' or a number of seconds -> seconds."""
    v = str(v).strip()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if v and v[-1] in mult:
        return float(v[:-1]) * mult[v[-1]]
    return float(v)


def stuff(data):
    """Dot-stuffs message bytes (CRLF lines) and appends the terminating dot."""
    if isinstance(data, str):
        data = data.encode()
    assert data == b"" or data.endswith(CRLF), "message data must end with CRLF"
    lines = data.split(CRLF)[:-1] if data else []
    out = [(b"." + l if l.startswith(b".") else l) + CRLF for l in lines]
    return b"".join(out) + b".\r\n"


def make_message(subject="test", body="hello\r\n", msgid=None, extra_headers=()):
    """A small RFC 5322 message as bytes with CRLF line ends."""
    if msgid is None:
        msgid = "<%s@test.example>" % uuid.uuid4().hex
    hdrs = [
        "From: Sender <sender@client.example>",
        "To: Rcpt <rcpt@dest.example>",
        "Subject: %s" % subject,
        "Message-ID: %s" % msgid,
    ] + list(extra_headers)
    head = ("\r\n".join(hdrs) + "\r\n\r\n").encode()
    if isinstance(body, str):
        body = body.encode()
    return head + body


def strip_received(data):
    """Splits data into (prepended trace header block, rest): the Received:
    header the daemon prepends (with its continuation lines) and the original
    message as the client sent it."""
    assert data.startswith(b"Received: "), "no Received: header first: %r" % data[:200]
    lines = data.split(CRLF)
    i = 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    head = CRLF.join(lines[:i]) + CRLF
    return head, data[len(head) :]


# ------------------------------------------------------------- SMTP client
class Reply:
    """One SMTP reply, possibly multi-line."""

    def __init__(self, lines):
        self.raw_lines = lines  # bytes, without CRLF
        first = lines[0].decode("latin-1")
        self.code = int(first[:3])
        self.lines = [l.decode("latin-1")[4:] for l in lines]
        self.text = "\n".join(self.lines)
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", self.lines[0])
        self.enhanced = m.group(1) if m else None

    def __str__(self):
        return "\n".join(l.decode("latin-1") for l in self.raw_lines)

    __repr__ = __str__

    def __eq__(self, other):
        raise TypeError("compare reply.code or reply.text, not a Reply")


class ConnectionClosed(Exception):
    pass


class Client:
    """A raw-socket SMTP client: exact bytes out, replies parsed in."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, read_greeting=True, source=None):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.greeting = self.reply() if read_greeting else None

    # raw I/O
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        while CRLF not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply within %.1fs (have %r)" % (timeout, self.buf[:200]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionClosed("connection closed by the server (have %r)" % self.buf[:200])
            self.buf += chunk
        line, self.buf = self.buf.split(CRLF, 1)
        return line

    def reply(self, timeout=None):
        """Reads one complete reply (all its lines)."""
        timeout = self.timeout if timeout is None else timeout
        lines = []
        while True:
            line = self._readline(timeout)
            assert re.match(rb"^[2-5]\d\d([ -]|$)", line), "malformed reply line %r" % line
            lines.append(line)
            if len(line) < 4 or line[3:4] == b" ":
                return Reply(lines)
            assert line[:3] == lines[0][:3], "multi-line reply changes code: %r" % lines

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """Sends one command line (CRLF added) and returns its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + CRLF)
        return self.reply(timeout)

    def wait_closed(self, timeout=5.0):
        """True when the server closed the connection within timeout (any
        unread replies are kept in self.buf)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    # SMTP conveniences
    def ehlo(self, name="client.example"):
        return self.cmd("EHLO " + name)

    def mail(self, addr, params=""):
        return self.cmd("MAIL FROM:<%s>%s" % (addr, (" " + params) if params else ""))

    def rcpt(self, addr, params=""):
        return self.cmd("RCPT TO:<%s>%s" % (addr, (" " + params) if params else ""))

    def data(self, message, stuffed=False):
        """DATA, then the message (dot-stuffed here unless stuffed=True, in
        which case `message` must include the final dot); returns the reply to
        the final dot. Asserts the 354."""
        r = self.cmd("DATA")
        assert r.code == 354, "DATA: %s" % r
        self.send(message if stuffed else stuff(message))
        return self.reply()

    def sendmail(self, mail_from, rcpts, message, ehlo=True, mail_params=""):
        """A whole transaction; returns the reply to the final dot. Asserts the
        intermediate replies are positive."""
        if ehlo:
            r = self.ehlo()
            assert r.code == 250, "EHLO: %s" % r
        r = self.mail(mail_from, mail_params)
        assert r.code == 250, "MAIL: %s" % r
        for a in [rcpts] if isinstance(rcpts, str) else rcpts:
            r = self.rcpt(a)
            assert r.code == 250, "RCPT %s: %s" % (a, r)
        return self.data(message)

    def quit(self):
        try:
            r = self.cmd("QUIT")
        except (ConnectionClosed, OSError):
            r = None
        self.close()
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


QID_RE = re.compile(r"^2\.0\.0 (\S+) Message accepted for delivery")


def accepted_qid(reply):
    """The queue id in '250 2.0.0 <qid> Message accepted for delivery'."""
    assert reply.code == 250, "message not accepted: %s" % reply
    m = QID_RE.match(reply.lines[0])
    assert m, "unexpected acceptance reply %s" % reply
    return m.group(1)


# ------------------------------------------------------------------- daemon
def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    # pid (comm) state ppid pgrp ...
    rest = s[s.rindex(")") + 2 :].split()
    return {"state": rest[0], "ppid": int(rest[1]), "pgrp": int(rest[2])}


def pids_in_group(pgid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st and st["pgrp"] == pgid and st["state"] != "Z":
                out.append(int(d))
    return out


def proc_status(pid):
    """/proc/PID/status as a dict of strings."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def socket_owner(local_port, remote_port):
    """The pid of the process holding the server side of a TCP connection
    127.0.0.1:local_port <- client:remote_port (found by socket inode)."""
    inode = None
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(":", 1)[1], 16)
                    rport = int(p[2].rsplit(":", 1)[1], 16)
                    if lport == local_port and rport == remote_port and p[9] != "0":
                        inode = p[9]
        except OSError:
            pass
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % d):
                try:
                    if os.readlink("/proc/%s/fd/%s" % (d, fd)) == target:
                        return int(d)
                except OSError:
                    pass
        except OSError:
            pass
    return None


class Daemon:
    """One jailmail daemon on a fresh jail. Start with .start()."""

    def __init__(self, base, conf, name="jailmail"):
        self.base = base
        self.name = name
        self.conf = dict(conf)
        self.conf_path = os.path.join(base, name + ".conf")
        self.stderr_path = os.path.join(base, name + ".stderr")
        self.proc = None
        self.exit_codes = []
        self.starts = 0

    # configuration
    @property
    def port(self):
        first = self.conf["listen"]
        first = first[0] if isinstance(first, list) else first
        return int(first.rsplit(":", 1)[1])

    @property
    def jail(self):
        return self.conf["jail_directory"]

    @property
    def qdir(self):
        return os.path.join(self.jail, self.conf["queue_directory"].lstrip("/"))

    def write_conf(self, text=None):
        if text is None:
            lines = []
            for k, v in self.conf.items():
                if v is None:
                    continue
                for one in v if isinstance(v, list) else [v]:
                    lines.append("%s = %s" % (k, one))
            text = "# written by tests/integration/conftest.py\n" + "\n".join(lines) + "\n"
        # atomically, as a careful administrator does: a SIGHUP still being
        # handled must never read a half-written file
        tmp = self.conf_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)
        return self.conf_path

    def command(self):
        return [os.path.join(BUILD, "sendmail"), "-bD", "-C", self.conf_path]

    # life
    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        binary = os.path.join(BUILD, "sendmail")
        assert os.path.exists(binary), "no daemon binary at %s (set JAILMAIL_BUILD, run make)" % binary
        if self.starts == 0:  # later starts keep the file as the test left it
            self.write_conf()
        err = open(self.stderr_path, "ab")
        err.write(b"=== start %d\n" % (self.starts + 1))
        err.flush()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            cwd=self.base,
            start_new_session=True,
        )
        err.close()
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(
                    "daemon exited with %d during start-up:\n%s" % (rc, self.log_tail())
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    buf = b""
                    while b"\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if buf.startswith(b"220"):
                        try:
                            s.sendall(b"QUIT\r\n")
                            s.recv(4096)
                        except OSError:
                            pass
                        return
                    last = buf
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("daemon not answering 220 on port %d (%r):\n%s" % (self.port, last, self.log_tail()))

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pids(self):
        """The master's living children (the workers): what `ps --ppid` says,
        read from /proc so that procps is not needed."""
        if not self.running():
            return []
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = _proc_stat(int(d))
                if st and st["ppid"] == self.proc.pid and st["state"] != "Z":
                    out.append(int(d))
        return sorted(out)

    def workers(self):
        """[(pid, cmdline)] of the workers."""
        res = []
        for p in self.pids:
            try:
                with open("/proc/%d/cmdline" % p, "rb") as f:
                    res.append((p, f.read().replace(b"\0", b" ").decode("latin-1").strip()))
            except OSError:
                pass
        return res

    def smtpd_pid(self):
        """The pid of the process serving SMTP sessions, found by which process
        holds the server side of a fresh connection (no naming assumed)."""
        with Client(self.port) as c:
            local = c.sock.getsockname()[1]
            return wait_until(lambda: socket_owner(self.port, local), 5, what="session owner")

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def reload(self):
        self.send_signal(signal.SIGHUP)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Sends sig to the master and waits for its exit; returns the exit code
        (negative: killed by a signal). SIGKILLs the group if it does not exit."""
        if self.proc is None:
            return None
        if timeout is None:
            timeout = parse_time(self.conf.get("shutdown_timeout", "30s")) + 10
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("daemon did not exit within %.0fs of signal %d" % (timeout, sig))
        rc = self.proc.returncode
        self._reap_group()
        self.exit_codes.append(rc)
        return rc

    def kill(self):
        """SIGKILL to the whole process group (master and workers)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        workers = self.pids
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in workers:  # in case a worker left the group
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.exit_codes.append(self.proc.returncode)
        self._reap_group()

    def _reap_group(self):
        pgid = self.proc.pid
        deadline = time.monotonic() + 10
        while pids_in_group(pgid) and time.monotonic() < deadline:
            for p in pids_in_group(pgid):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def restart(self, sig=signal.SIGTERM):
        rc = self.stop(sig)
        self.start()
        return rc

    # logs and queue
    def log(self):
        """Everything the daemon wrote: its stderr, then log_file if set."""
        text = ""
        for p in (self.stderr_path, self.conf.get("log_file")):
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
        return text

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=10.0, count=1):
        """Waits until the regex matches at least `count` times in the log;
        returns the list of matches."""
        rx = re.compile(pattern, re.M)

        def found():
            m = list(rx.finditer(self.log()))
            return m if len(m) >= count else None

        try:
            return wait_until(found, timeout, 0.1, what="log %r" % pattern)
        except AssertionError:
            raise AssertionError("log never matched %r (x%d); log tail:\n%s" % (pattern, count, self.log_tail()))

    def sanitizer_reports(self):
        text = self.log()
        return [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKS)]

    def queue_files(self, sub="msg"):
        d = os.path.join(self.qdir, sub)
        try:
            return sorted(f for f in os.listdir(d) if not f.startswith("."))
        except FileNotFoundError:
            return []


# ------------------------------------------------------------------ fixtures
def pytest_configure(config):
    config.addinivalue_line("markers", "conf(**kw): configuration keys for the daemon fixture")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "-r", "-g", RUN_AS_GROUP, "-s", "/usr/sbin/nologin", "-d", "/nonexistent", RUN_AS_USER],
                check=True,
            )


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def workdir(request):
    """A fresh directory under /var/tmp, 0755 all the way up, so that the
    run-as user can reach the jail inside it."""
    d = tempfile.mkdtemp(prefix="jailmail-it-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    rep = getattr(request.node, "rep_call", None)
    if os.environ.get("JAILMAIL_KEEP") or (rep is not None and rep.failed):
        print("kept work directory:", d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sink():
    s = Sink().start()
    yield s
    s.stop()


def default_conf(base, sink, name="jailmail"):
    return {
        "listen": "127.0.0.1:%d" % free_port(),
        "hostname": HOSTNAME,
        "jail_directory": os.path.join(base, name + "-jail"),
        "queue_directory": "/queue",
        "run_as_user": RUN_AS_USER,
        "run_as_group": RUN_AS_GROUP,
        "smarthost": "[127.0.0.1]:%d" % sink.port,
        "retry_min": "1s",
        "queue_interval": "5s",
        "shutdown_timeout": "10s",
    }


@pytest.fixture
def start_daemon(request, workdir, sink):
    """Factory: start_daemon(start=True, **conf) -> a running Daemon relaying
    to `sink`. Every daemon started is stopped at teardown, and the test fails
    if any of them reported a sanitizer error."""
    started = []

    def start(name=None, start=True, **overrides):
        name = name or "jailmail%d" % (len(started) + 1)
        conf = default_conf(workdir, sink, name)
        for k, v in overrides.items():
            conf[k] = v
        d = Daemon(workdir, conf, name)
        started.append(d)
        if start:
            d.start()
        return d

    yield start

    problems = []
    for d in started:
        try:
            if d.running():
                d.stop(signal.SIGTERM, timeout=20)
        except AssertionError as e:
            problems.append(str(e))
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.kill()
        reports = d.sanitizer_reports()
        if reports:
            problems.append("%s: sanitizer reported:\n%s\n%s" % (d.name, "\n".join(reports[:20]), d.log_tail(80)))
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for d in started:
            print("---- %s log (tail) ----\n%s" % (d.name, d.log_tail(80)))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(request, start_daemon):
    """The daemon, started with the default test configuration plus the keys
    of @pytest.mark.conf(...)."""
    overrides = {}
    for m in reversed(list(request.node.iter_markers("conf"))):
        overrides.update(m.kwargs)
    return start_daemon(name="jailmail", **overrides)


@pytest.fixture
def smtp(request):
    """Factory: smtp(port, **kw) -> Client; closed at teardown."""
    clients = []

    def connect(port=None, **kw):
        if port is None:
            port = request.getfixturevalue("daemon").port
        c = Client(port, **kw)
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()
