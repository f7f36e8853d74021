"""A real, strict, scriptable receiving SMTP server for the integration tests.

The daemon under test relays to this server (its smarthost). The sink:

- speaks ESMTP (EHLO advertises PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES)
  and reads pipelined commands in order;
- records every connection, every command with the reply it got, and every
  transaction that reached the end of DATA (`attempts`), and the accepted
  ones (`messages`): envelope, the data exactly as received after removing
  the dot-stuffing (`data`), and the raw bytes of the DATA phase (`raw`);
- is strict about what the client sends: a bare LF or bare CR anywhere, a
  command out of order, a line in DATA that starts with an unstuffed dot, a
  command line over 512 octets, or a DATA phase cut short are recorded in
  `errors` (tests assert that list is empty);
- is scriptable: `script(event, reply, times=N, match=...)` answers the next
  N matching commands with a canned reply (or drops the connection), then
  falls back to the normal replies.

Events that can be scripted: CONNECT (the greeting), EHLO, HELO, MAIL, RCPT,
DATA (the 354 reply), DATA_END (the reply to the final dot), RSET, NOOP, QUIT.

Run alone for a quick manual look:  python3 sink.py 2525
"""

import re
import socket
import threading
import time

CRLF = b"\r\n"
MAX_LINE = 1 << 20  # refuse to buffer more than this without a line end
RFC_COMMAND_LINE = 512  # RFC 5321 4.5.3.1.4, CRLF included


class Rule:
    """One canned answer: for `times` matching events (None: forever)."""

    def __init__(self, event, reply, times, match, action, delay):
        self.event = event
        self.reply = reply
        self.times = times
        self.match = re.compile(match, re.I) if match else None
        self.action = action  # "reply", "drop"
        self.delay = delay
        self.used = 0

    def applies(self, event, arg):
        if self.event != event:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        if self.match and not self.match.search(arg):
            return False
        return True


class Transaction:
    """One MAIL..DATA transaction as the sink saw it."""

    def __init__(self, conn_id, helo):
        self.conn_id = conn_id
        self.helo = helo
        self.mail_from = None  # the address inside <>, "" for the null sender
        self.mail_params = []  # ["BODY=8BITMIME", "SIZE=123"]
        self.rcpts = []  # accepted recipients (addresses)
        self.refused_rcpts = []  # (address, reply) refused by the sink
        self.raw = b""  # the DATA bytes as sent, dot-stuffed, without the final ".\r\n"
        self.data = b""  # after removing the dot-stuffing
        self.reply = None  # reply given to the final dot
        self.accepted = False
        self.time = None

    def __repr__(self):
        return "<Transaction conn=%d from=%r rcpts=%r size=%d reply=%r>" % (
            self.conn_id,
            self.mail_from,
            self.rcpts,
            len(self.data),
            self.reply,
        )


class _Conn:
    """Reads CRLF-terminated lines from one socket, flags bare CR / LF."""

    def __init__(self, sink, sock, conn_id):
        self.sink = sink
        self.sock = sock
        self.id = conn_id
        self.buf = b""
        self.closed = False

    def read_line(self):
        """Returns one line without its CRLF, or None at EOF / drop."""
        while True:
            i = self.buf.find(CRLF)
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                if b"\n" in line:
                    self.sink._error(self.id, "bare LF in %r" % line[:80], "bare-lf")
                if b"\r" in line:
                    self.sink._error(self.id, "bare CR in %r" % line[:80], "bare-cr")
                return line
            if len(self.buf) > MAX_LINE:
                self.sink._error(self.id, "line longer than %d without CRLF" % MAX_LINE)
                return None
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                if self.buf:
                    self.sink._error(self.id, "EOF after partial line %r" % self.buf[:80], "lost")
                return None
            self.buf += chunk

    def send(self, text):
        if isinstance(text, str):
            text = text.encode()
        try:
            self.sock.sendall(text + CRLF)
        except OSError:
            self.closed = True

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Sink:
    def __init__(self, host="127.0.0.1", port=0, hostname="sink.test", size_limit=52428800):
        self.host = host
        self.hostname = hostname
        self.size_limit = size_limit
        self.lock = threading.Condition()
        self.rules = []
        self.connections = 0
        self.events = []  # (conn_id, event, argument, reply)
        self.attempts = []  # every transaction that reached the final dot
        self.messages = []  # accepted transactions
        self.errors = []  # protocol errors of the client
        self.port = port
        self._listener = None
        self._threads = []
        self._socks = set()
        self._running = False

    # ----------------------------------------------------------------- life
    def start(self):
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        self._listener = s
        self._running = True
        t = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        """Closes the listening socket and every open session (the sink is 'down')."""
        self._running = False
        if self._listener:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self.lock:
            socks = list(self._socks)
        for c in socks:
            c.close()
        for t in self._threads:
            t.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def restart(self):
        """Comes back on the same port."""
        self.stop()
        return self.start()

    @property
    def running(self):
        return self._running

    # ------------------------------------------------------------ scripting
    def script(self, event, reply=None, times=1, match=None, action="reply", delay=0):
        """Answer the next `times` (None: every) `event`s whose argument matches
        the regex `match` with `reply`; action="drop" closes the connection
        instead of answering. Rules are tried in the order they were added."""
        event = event.upper()
        assert event in (
            "CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "DATA_END", "RSET", "NOOP", "QUIT",
        ), event
        assert action in ("reply", "drop")
        assert action == "drop" or reply, "a reply is needed"
        with self.lock:
            self.rules.append(Rule(event, reply, times, match, action, delay))

    def clear_script(self):
        with self.lock:
            self.rules = []

    # ------------------------------------------------------------- queries
    def wait_for(self, n, timeout=10.0):
        """Waits until at least n messages were accepted; returns a copy of them.
        Fails (AssertionError) with what was seen when the time runs out."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "sink: %d message(s) wanted within %.1fs, got %d; attempts=%r errors=%r"
                        % (n, timeout, len(self.messages), self.attempts[-5:], self.errors[:5])
                    )
                self.lock.wait(min(left, 0.2))
            return list(self.messages)

    def wait_until(self, predicate, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("sink: %s not met within %.1fs" % (what, timeout))
                self.lock.wait(min(left, 0.2))

    def count(self, event, match=None):
        """How many times an event (e.g. "RCPT") was seen, optionally whose
        argument matches the regex `match`."""
        rx = re.compile(match, re.I) if match else None
        with self.lock:
            return sum(1 for e in self.events if e[1] == event and (not rx or rx.search(e[2])))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def protocol_errors(self, ignore=()):
        """Errors, less those of the kinds in `ignore`. Kinds: bare-lf, bare-cr,
        unstuffed (a dot line not stuffed), lost (connection lost in DATA),
        other (order, syntax, long line...)."""
        with self.lock:
            return [e for e in self.errors if e[1] not in ignore]

    def assert_clean(self, ignore=()):
        errs = self.protocol_errors(ignore)
        assert not errs, "sink saw protocol errors: %r" % errs[:10]

    # ------------------------------------------------------------ internals
    def _error(self, conn_id, what, kind="other"):
        with self.lock:
            self.errors.append((conn_id, kind, what))
            self.lock.notify_all()

    def _record(self, conn_id, event, arg, reply):
        with self.lock:
            self.events.append((conn_id, event, arg, reply))

    def _rule_for(self, event, arg):
        with self.lock:
            for r in self.rules:
                if r.applies(event, arg):
                    r.used += 1
                    return r
        return None

    def _accept_loop(self, listener):
        while self._running:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                conn_id = self.connections
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(self, sock, conn_id)
            with self.lock:
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _answer(self, conn, event, arg, default):
        """Sends the scripted or default reply. Returns the reply, or None when
        the connection was dropped."""
        rule = self._rule_for(event, arg)
        reply = default
        if rule:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.action == "drop":
                self._record(conn.id, event, arg, None)
                conn.close()
                return None
            reply = rule.reply
        self._record(conn.id, event, arg, reply)
        conn.send(reply)
        return reply

    def _serve(self, conn):
        try:
            self._session(conn)
        except OSError:
            pass
        finally:
            if not conn.closed:
                conn.close()
            with self.lock:
                self._socks.discard(conn)
                self.lock.notify_all()

    def _session(self, conn):
        if self._answer(conn, "CONNECT", "", "220 %s ESMTP sink" % self.hostname) is None:
            return
        helo = None
        tx = None
        while not conn.closed:
            line = conn.read_line()
            if line is None:
                if tx is not None and tx.mail_from is not None:
                    pass  # a client may give up mid-transaction; not an error
                return
            if len(line) + 2 > RFC_COMMAND_LINE:
                self._error(conn.id, "command line of %d octets" % (len(line) + 2))
            text = line.decode("latin-1")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                ok = "250-%s hello %s" % (self.hostname, arg)
                if verb == "EHLO":
                    ok = "\r\n".join([
                        "250-%s hello %s" % (self.hostname, arg),
                        "250-PIPELINING",
                        "250-8BITMIME",
                        "250-SIZE %d" % self.size_limit,
                        "250 ENHANCEDSTATUSCODES",
                    ])
                else:
                    ok = "250 %s hello %s" % (self.hostname, arg)
                if self._answer(conn, verb, arg, ok) is None:
                    return
                helo = arg
                tx = None
            elif verb == "MAIL":
                tx = self._mail(conn, helo, tx, arg)
            elif verb == "RCPT":
                self._rcpt(conn, tx, arg)
            elif verb == "DATA":
                if not self._data(conn, tx, arg):
                    return
                tx = None
            elif verb == "RSET":
                tx = None
                self._answer(conn, "RSET", arg, "250 2.0.0 reset")
            elif verb == "NOOP":
                self._answer(conn, "NOOP", arg, "250 2.0.0 ok")
            elif verb == "QUIT":
                if tx is not None:
                    pass  # QUIT after RSET-less MAIL is legal
                self._answer(conn, "QUIT", arg, "221 2.0.0 bye")
                conn.close()
                return
            else:
                self._error(conn.id, "unexpected command %r" % text[:80])
                self._record(conn.id, verb, arg, "500")
                conn.send("500 5.5.1 command unrecognized")
            if conn.closed:
                return

    _PATH = re.compile(r"^(FROM|TO):\s*<([^<>]*)>(.*)$", re.I)

    def _mail(self, conn, helo, tx, arg):
        if helo is None:
            self._error(conn.id, "MAIL before EHLO/HELO")
            self._record(conn.id, "MAIL", arg, "503")
            conn.send("503 5.5.1 EHLO first")
            return tx
        if tx is not None:
            self._error(conn.id, "nested MAIL")
            self._record(conn.id, "MAIL", arg, "503")
            conn.send("503 5.5.1 sender already given")
            return tx
        m = self._PATH.match(arg)
        if not m or m.group(1).upper() != "FROM":
            self._error(conn.id, "bad MAIL syntax %r" % arg)
            self._record(conn.id, "MAIL", arg, "501")
            conn.send("501 5.5.4 syntax: MAIL FROM:<address>")
            return tx
        params = m.group(3).split()
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE" and v.isdigit() and int(v) > self.size_limit:
                self._record(conn.id, "MAIL", arg, "552")
                conn.send("552 5.3.4 message too big")
                return None
            if k.upper() not in ("SIZE", "BODY"):
                self._error(conn.id, "MAIL parameter not advertised: %r" % p)
        reply = self._answer(conn, "MAIL", arg, "250 2.1.0 sender ok")
        if reply is None or not reply.startswith("2"):
            return None
        tx = Transaction(conn.id, helo)
        tx.mail_from = m.group(2)
        tx.mail_params = params
        return tx

    def _rcpt(self, conn, tx, arg):
        if tx is None:
            # Only an error if the client had no reason to believe MAIL
            # succeeded; with PIPELINING it may legally send RCPT after a
            # failed MAIL, so we only record the event.
            self._record(conn.id, "RCPT", arg, "503")
            conn.send("503 5.5.1 need MAIL first")
            return
        m = self._PATH.match(arg)
        if not m or m.group(1).upper() != "TO" or not m.group(2):
            self._error(conn.id, "bad RCPT syntax %r" % arg)
            self._record(conn.id, "RCPT", arg, "501")
            conn.send("501 5.5.4 syntax: RCPT TO:<address>")
            return
        reply = self._answer(conn, "RCPT", arg, "250 2.1.5 recipient ok")
        if reply is None:
            return
        if reply.startswith("2"):
            tx.rcpts.append(m.group(2))
        else:
            tx.refused_rcpts.append((m.group(2), reply))

    def _data(self, conn, tx, arg):
        """Returns False when the connection is gone."""
        if arg:
            self._error(conn.id, "DATA with an argument %r" % arg)
        if tx is None or not tx.rcpts:
            self._record(conn.id, "DATA", arg, "503" if tx is None else "554")
            conn.send("503 5.5.1 need MAIL" if tx is None else "554 5.5.1 no valid recipients")
            return True
        reply = self._answer(conn, "DATA", arg, "354 go ahead, end with <CRLF>.<CRLF>")
        if reply is None:
            return False
        if not reply.startswith("3"):
            return True
        raw = []
        data = []
        while True:
            line = conn.read_line()
            if line is None:
                self._error(conn.id, "connection lost in DATA after %d lines" % len(raw), "lost")
                return False
            if line == b".":
                break
            raw.append(line + CRLF)
            if line.startswith(b"."):
                if not line.startswith(b".."):
                    self._error(conn.id, "unstuffed dot line %r" % line[:80], "unstuffed")
                line = line[1:]
            data.append(line + CRLF)
        tx.raw = b"".join(raw)
        tx.data = b"".join(data)
        tx.time = time.time()
        reply = self._answer(conn, "DATA_END", "", "250 2.0.0 queued as S%d" % (len(self.attempts) + 1))
        tx.reply = reply
        tx.accepted = reply is not None and reply.startswith("2")
        with self.lock:
            self.attempts.append(tx)
            if tx.accepted:
                self.messages.append(tx)
            self.lock.notify_all()
        return reply is not None


if __name__ == "__main__":
    import sys

    s = Sink(port=int(sys.argv[1]) if len(sys.argv) > 1 else 2525).start()
    print("sink on port", s.port)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        s.stop()
        print(s.messages, s.errors)
