"""Every limit holds, and hostile bytes (bare CR/LF, NUL, pipelining abuse)
neither crash the daemon nor get a message through."""

import time

import pytest

from conftest import Client, ConnectionClosed, accepted_qid, make_message, stuff, wait_until


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
