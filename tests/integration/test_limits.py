"""Every limit holds, and hostile bytes (bare CR/LF, NUL, pipelining abuse)
neither crash the daemon nor get a message through."""

import os
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import (
    Client,
    ConnectionClosed,
    accepted_qid,
    make_message,
    proc_status,
    socket_owner,
    stuff,
    wait_until,
)


def start_transaction(smtp, rcpts=("rcpt@dest.example",)):
    c = smtp()
    assert c.ehlo().code == 250
    assert c.mail("sender@client.example").code == 250
    for a in rcpts:
        assert c.rcpt(a).code == 250
    return c


def assert_nothing_delivered(daemon, sink, wait=2.0):
    """Nothing reaches the sink, nothing stays in msg/ (give the queue worker
    `wait` seconds to show a message if one slipped through)."""
    time.sleep(wait)
    assert sink.attempts == [], sink.attempts
    assert daemon.queue_files("msg") == []


def assert_still_serving(daemon, sink):
    """A new session can still send a message end to end."""
    c = Client(daemon.port)
    msg = make_message(subject="after")
    accepted_qid(c.sendmail("sender@client.example", ["ok@dest.example"], msg))
    c.quit()
    got = sink.wait_for(1, 15)
    assert got[-1].data.endswith(msg)


@pytest.mark.conf(max_message_size="20K")
def test_message_too_big(daemon, smtp, sink):
    c = start_transaction(smtp)
    assert c.cmd("DATA").code == 354
    big = make_message(body=("x" * 78 + "\r\n") * 400)  # 32 KB
    c.send(stuff(big))
    r = c.reply()
    assert r.code == 552 and r.enhanced == "5.3.4", str(r)
    # the session goes on, the transaction is over
    assert c.mail("sender@client.example").code == 250
    c.quit()
    assert_nothing_delivered(daemon, sink)
    assert_still_serving(daemon, sink)


@pytest.mark.conf(max_message_size="20K")
def test_declared_size_too_big_refused_at_mail(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    r = c.mail("sender@client.example", "SIZE=1000000")
    assert r.code == 552, str(r)


@pytest.mark.conf(max_recipients=3)
def test_too_many_recipients(daemon, smtp, sink):
    rcpts = ["r%d@dest.example" % i for i in range(3)]
    c = start_transaction(smtp, rcpts)
    r = c.rcpt("r3@dest.example")
    assert str(r) == "452 4.5.3 Too many recipients"
    accepted_qid(c.data(make_message()))
    (m,) = sink.wait_for(1, 15)
    assert m.rcpts == rcpts


@pytest.mark.conf(max_header_size="2K")
def test_header_too_big(daemon, smtp, sink):
    c = start_transaction(smtp)
    extra = ["X-Filler-%d: %s" % (i, "h" * 60) for i in range(80)]  # ~6 KB of header
    msg = make_message(extra_headers=extra, body="short body\r\n")
    assert c.cmd("DATA").code == 354
    c.send(stuff(msg))
    r = c.reply()
    assert r.code == 552, str(r)
    c.quit()
    assert_nothing_delivered(daemon, sink)


@pytest.mark.conf(max_header_size="2K", max_message_size="1M")
def test_big_body_small_header_is_fine(daemon, smtp, sink):
    c = start_transaction(smtp)
    msg = make_message(body=("b" * 70 + "\r\n") * 2000)  # 144 KB body
    accepted_qid(c.data(msg))
    (m,) = sink.wait_for(1, 15)
    assert m.data.endswith(msg)


@pytest.mark.conf(max_connections_per_client=3, max_connections=50)
def test_connections_per_client(daemon, smtp):
    held = [smtp() for _ in range(3)]
    for c in held:
        assert c.greeting.code == 220
    extra = smtp()
    assert extra.greeting.code == 421 and extra.greeting.enhanced == "4.7.0", str(extra.greeting)
    assert extra.wait_closed(3)
    # another client address is not limited by this one's count
    other = smtp(source="127.0.0.2")
    assert other.greeting.code == 220
    # when one leaves, a new one is welcome again
    held[0].quit()

    def greeted():
        c = Client(daemon.port)
        ok = c.greeting.code == 220
        c.close()
        return ok

    wait_until(greeted, 5, 0.2, what="a free per-client slot")


@pytest.mark.conf(max_connections=3, max_connections_per_client=10)
def test_connections_total(daemon, smtp):
    held = [smtp(source="127.0.0.%d" % (10 + i)) for i in range(3)]
    for c in held:
        assert c.greeting.code == 220
    extra = smtp(source="127.0.0.20")
    assert extra.greeting.code == 421 and extra.greeting.enhanced == "4.7.0", str(extra.greeting)
    assert extra.wait_closed(3)


@pytest.mark.conf(command_timeout="3s")
def test_command_timeout(daemon, smtp):
    c = smtp()
    assert c.ehlo().code == 250
    t0 = time.monotonic()
    r = c.reply(timeout=10)
    waited = time.monotonic() - t0
    assert r.code == 421 and r.enhanced == "4.4.2", str(r)
    assert 2.5 <= waited <= 8, waited
    assert c.wait_closed(3)


@pytest.mark.conf(command_timeout="3s")
def test_command_timeout_counts_idle_time_not_session_time(daemon, smtp):
    c = smtp()
    for _ in range(5):  # 5 s of activity, never 3 s idle
        assert c.cmd("NOOP").code == 250
        time.sleep(1)
    assert c.cmd("NOOP").code == 250


def test_nul_in_command(daemon, smtp):
    c = smtp()
    assert c.ehlo().code == 250
    c.send(b"MAIL FROM:<a\x00b@client.example>\r\n")
    r = c.reply()
    assert 500 <= r.code < 600, str(r)


def test_bare_lf_in_command(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    c.send(b"MAIL FROM:<a@client.example>\nRCPT TO:<b@dest.example>\r\n")
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare linefeed (LF) not allowed"
    assert c.wait_closed(3)
    assert_nothing_delivered(daemon, sink, wait=1)


def test_bare_lf_smuggling_in_command_stream(daemon, smtp, sink):
    c = start_transaction(smtp)
    # a whole second transaction hidden behind bare LFs
    c.send(b"DATA\nSubject: smuggled\n\nevil\n.\nQUIT\r\n")
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare linefeed (LF) not allowed"
    assert c.wait_closed(3)
    assert_nothing_delivered(daemon, sink)


def test_bare_lf_in_data(daemon, smtp, sink):
    c = start_transaction(smtp)
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: lf\r\n\r\nline one\nline two\r\n.\r\n")
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare linefeed (LF) not allowed"
    assert c.wait_closed(3)
    assert_nothing_delivered(daemon, sink)
    wait_until(lambda: daemon.queue_files("tmp") == [], 5, what="tmp/ cleaned")


def test_bare_lf_dot_lf_does_not_end_data(daemon, smtp, sink):
    # the SMTP smuggling pattern: <LF>.<LF> or <LF>.<CRLF> must not end DATA
    c = start_transaction(smtp)
    assert c.cmd("DATA").code == 354
    c.send(
        b"Subject: first\r\n\r\nbody\n.\r\nMAIL FROM:<evil@client.example>\r\n"
        b"RCPT TO:<victim@dest.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
    )
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare linefeed (LF) not allowed"
    assert_nothing_delivered(daemon, sink)


def test_bare_cr_in_command(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    c.send(b"NOOP a\rb\r\n")
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare carriage return (CR) not allowed"
    assert c.wait_closed(3)


def test_bare_cr_in_data(daemon, smtp, sink):
    c = start_transaction(smtp)
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: cr\r\n\r\nline one\rline two\r\n.\r\n")
    r = c.reply()
    assert str(r) == "421 4.5.0 Bare carriage return (CR) not allowed"
    assert c.wait_closed(3)
    assert_nothing_delivered(daemon, sink)


def test_command_pipelined_after_data(daemon, smtp, sink):
    c = start_transaction(smtp)
    c.send(b"DATA\r\nMAIL FROM:<x@client.example>\r\n")
    r = c.reply()
    assert r.code == 554 and r.enhanced == "5.5.0", str(r)
    assert_nothing_delivered(daemon, sink, wait=1)


def test_message_pipelined_after_data_is_not_smuggled(daemon, smtp, sink):
    c = start_transaction(smtp)
    c.send(
        b"DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\n"
        b"MAIL FROM:<evil@client.example>\r\nRCPT TO:<victim@dest.example>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n"
    )
    r = c.reply()
    assert r.code == 554 and r.enhanced == "5.5.0", str(r)
    try:
        while True:  # whatever else comes must not be an acceptance
            more = c.reply(timeout=2)
            assert more.code != 250 or "accepted" not in more.text, str(more)
    except (ConnectionClosed, OSError):
        pass
    assert_nothing_delivered(daemon, sink)


def test_hostile_bytes_do_not_kill_the_daemon(daemon, smtp, sink):
    payloads = [
        b"\xff\xfe\xfd\r\n",
        b"EHLO " + b"\x80" * 300 + b"\r\n",
        b"MAIL FROM:<" + b"a" * 3000 + b"@x>\r\n",
        b"RCPT TO:<<<>>>\r\n",
        b"\r\n\r\n\r\n",
        b"DATA\r\n.\r\n",
    ]
    for p in payloads:
        c = Client(daemon.port)
        try:
            c.send(p)
            c.reply(timeout=5)
        except (ConnectionClosed, OSError):
            pass
        c.close()
    assert_still_serving(daemon, sink)


@pytest.mark.conf(data_timeout="3s", command_timeout="30s")
def test_data_timeout(daemon, smtp, sink):
    c = start_transaction(smtp)
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: stalled\r\n\r\nhalf a mess")
    t0 = time.monotonic()
    r = c.reply(timeout=15)
    waited = time.monotonic() - t0
    assert r.code == 421 and r.enhanced == "4.4.2", str(r)
    assert 2.5 <= waited <= 8, waited
    assert c.wait_closed(3)
    assert_nothing_delivered(daemon, sink, wait=1)
    wait_until(lambda: daemon.queue_files("tmp") == [], 5, what="tmp/ cleaned")


@pytest.mark.conf(max_connections=300, max_connections_per_client=300)
def test_many_idle_sessions(daemon, smtp, sink):
    idle = []
    for i in range(250):
        c = Client(daemon.port, source="127.0.2.%d" % (i % 250 + 1))
        assert c.greeting.code == 220, (i, str(c.greeting))
        idle.append(c)
    assert_still_serving(daemon, sink)
    for c in idle[::10]:
        assert c.cmd("NOOP").code == 250
    for c in idle:
        c.close()


@pytest.mark.conf(max_connections_per_client=3, max_connections=50)
def test_connection_counts_do_not_leak(daemon, smtp):
    for i in range(150):
        c = Client(daemon.port)
        assert c.greeting.code in (220, 421), str(c.greeting)
        if i % 3 == 0:
            c.quit()
        elif i % 3 == 1:  # abrupt close with RST
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            c.close()

    def three_welcome():
        cs = [Client(daemon.port) for _ in range(3)]
        ok = all(c.greeting.code == 220 for c in cs)
        for c in cs:
            c.close()
        return ok

    wait_until(three_welcome, 5, 0.3, what="3 connections welcome after churn")


@pytest.mark.conf(max_connections_per_client=3, max_connections=50)
def test_connection_counts_reset_when_smtpd_restarts(daemon, smtp):
    held = [smtp() for _ in range(3)]
    assert all(c.greeting.code == 220 for c in held)
    for c in held:
        c.cmd("NOOP")
    os.kill(socket_owner(daemon.port, held[0].sock.getsockname()[1]), signal.SIGKILL)
    for c in held:
        assert c.wait_closed(5)

    def three_welcome():
        try:
            cs = [Client(daemon.port, timeout=3) for _ in range(3)]
        except (OSError, ConnectionClosed):
            return False
        ok = all(c.greeting.code == 220 for c in cs)
        for c in cs:
            c.close()
        return ok

    wait_until(three_welcome, 10, 0.3, what="3 connections welcome by the new smtpd")


@pytest.mark.conf(max_recipients=100)
def test_pipelined_recipients_over_the_limit(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    rcpts = ["r%03d@dest.example" % i for i in range(105)]
    c.send(b"MAIL FROM:<s@client.example>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % a.encode() for a in rcpts) + b"DATA\r\n")
    replies = c.replies(107)
    codes = [r.code for r in replies]
    assert codes[0] == 250
    assert codes[1:101] == [250] * 100
    assert codes[101:106] == [452] * 5, codes[101:106]
    assert codes[106] == 354
    c.send(stuff(make_message()))
    accepted_qid(c.reply())
    (m,) = sink.wait_for(1, 15)
    assert m.rcpts == rcpts[:100]


def test_many_pipelined_commands_answered_in_order(daemon, smtp):
    c = smtp()
    assert c.ehlo().code == 250
    n = 1000
    c.send(b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"RSET\r\n")
    codes = [r.code for r in c.replies(n + 1, timeout=20)]
    assert codes == [250] * (n + 1)


def _rss_kb(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def test_client_that_never_reads_is_bounded(daemon, smtp):
    """A client that sends commands without reading the replies must not make
    the server buffer without bound (DESIGN: every allocation driven by
    network input has a bound)."""
    pid = daemon.smtpd_pid()
    before = _rss_kb(pid)
    c = smtp()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = b"NOOP\r\n" * 10000  # 60 KB, 10,000 replies of ~14 bytes
    sent = [0]
    stop = threading.Event()

    def pump():
        c.sock.settimeout(0.5)
        while not stop.is_set() and sent[0] < 64 * 1024 * 1024:
            try:
                c.sock.sendall(chunk)
                sent[0] += len(chunk)
            except OSError:
                if stop.is_set():
                    return
                continue

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    time.sleep(5)
    stop.set()
    t.join(5)
    grown = _rss_kb(pid) - before
    c.close()
    print("sent %d bytes without reading; smtpd grew by %d KB" % (sent[0], grown))
    assert grown < 32 * 1024, "smtpd grew by %d KB while %d bytes of unread-reply commands came in" % (grown, sent[0])
    # and it still serves
    d = Client(daemon.port)
    assert d.greeting.code == 220
    assert d.cmd("NOOP").code == 250


@pytest.mark.conf(max_command_line=512)
def test_command_line_limit_boundary(daemon, smtp):
    # conf.h: max_command_line counts the bytes of one line, CRLF included
    c = smtp()
    assert c.ehlo().code == 250
    exact = b"NOOP " + b"x" * (512 - 5 - 2)
    assert len(exact) + 2 == 512
    assert c.cmd(exact).code == 250
    r = c.cmd(exact + b"y")
    assert 500 <= r.code < 600, str(r)
    assert c.cmd("NOOP").code == 250


@pytest.mark.conf(max_header_size="1K")
def test_header_limit_boundary(daemon, smtp, sink):
    # the header section: every header line with its CRLF, not the empty line
    def header_of(size):
        h = b"Subject: boundary\r\n"
        filler = size - len(h) - len(b"X-Fill: \r\n")
        assert filler > 0
        return h + b"X-Fill: " + b"f" * filler + b"\r\n"

    for size, ok in ((1024, True), (1025, False)):
        hdr = header_of(size)
        assert len(hdr) == size
        c = start_transaction(smtp)
        assert c.cmd("DATA").code == 354
        c.send(stuff(hdr + b"\r\nbody\r\n"))
        r = c.reply()
        assert (r.code == 250) == ok, (size, str(r))
        if not ok:
            assert r.code == 552, str(r)
        c.quit()
    assert len(sink.wait_for(1, 15)) == 1
