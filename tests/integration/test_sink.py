"""The harness tests itself: the sink (with smtplib and with raw bytes) and
the client helpers, without the daemon. If these fail, nothing else in the
suite can be believed."""

import smtplib
import socket
import time

import pytest

from conftest import Client, ConnectionClosed, stuff, strip_received, make_message


def test_smtplib_roundtrip_exact_bytes(sink):
    body = b"line one\r\n.starts with a dot\r\n..two dots\r\n.\r\n\xe9\xe8 8bit\r\n"
    msg = make_message(body=body)
    with smtplib.SMTP("127.0.0.1", sink.port) as s:
        code, text = s.ehlo("me.example")
        assert code == 250
        for ext in ("pipelining", "8bitmime", "size", "enhancedstatuscodes"):
            assert s.has_extn(ext), ext
        s.sendmail("a@x.example", ["b@y.example", "c@z.example"], msg, mail_options=["BODY=8BITMIME"])
    (m,) = sink.wait_for(1, 5)
    assert m.mail_from == "a@x.example"
    assert m.rcpts == ["b@y.example", "c@z.example"]
    assert "BODY=8BITMIME" in m.mail_params
    assert m.data == msg
    assert m.raw == stuff(msg)[: -len(b".\r\n")]
    assert m.raw != m.data
    sink.assert_clean()


def test_scripted_replies_and_counts(sink):
    sink.script("DATA_END", "451 4.3.0 try again", times=2)
    sink.script("RCPT", "550 5.1.1 no such user", times=None, match="bad@")
    for attempt in range(3):
        with Client(sink.port) as c:
            assert c.greeting.code == 220
            assert c.ehlo().code == 250
            assert c.mail("a@x.example").code == 250
            assert c.rcpt("bad@y.example").code == 550
            assert c.rcpt("good@y.example").code == 250
            r = c.data(b"Subject: x\r\n\r\nbody\r\n")
            assert r.code == (451 if attempt < 2 else 250), r
            assert c.quit().code == 221
    assert len(sink.attempts) == 3
    (m,) = sink.wait_for(1, 1)
    assert m.rcpts == ["good@y.example"]
    assert m.refused_rcpts[0][0] == "bad@y.example"
    assert sink.count("RCPT", "bad@") == 3
    assert sink.count("DATA_END") == 3
    sink.assert_clean()


def test_drop_connection(sink):
    sink.script("DATA_END", action="drop")
    c = Client(sink.port)
    c.ehlo()
    c.mail("a@x")
    c.rcpt("b@y")
    assert c.cmd("DATA").code == 354
    c.send(stuff(b"hi\r\n"))
    with pytest.raises(ConnectionClosed):
        c.reply(timeout=3)
    assert sink.messages == []
    assert len(sink.attempts) == 1 and not sink.attempts[0].accepted


def test_strict_bare_lf_and_cr_and_unstuffed_dot(sink):
    c = Client(sink.port)
    c.ehlo()
    c.mail("a@x")
    c.rcpt("b@y")
    assert c.cmd("DATA").code == 354
    c.send(b"bare lf\nhere\r\nbare\rcr\r\n.unstuffed\r\n.\r\n")
    assert c.reply().code == 250
    kinds = {e[1] for e in sink.protocol_errors()}
    assert kinds == {"bare-lf", "bare-cr", "unstuffed"}
    assert sink.protocol_errors(ignore=("bare-lf", "bare-cr", "unstuffed")) == []
    with pytest.raises(AssertionError):
        sink.assert_clean()


def test_bare_lf_in_command_is_flagged(sink):
    c = Client(sink.port)
    c.send(b"EHLO x\nMAIL FROM:<a@b>\r\n")
    c.reply()
    assert any(e[1] == "bare-lf" for e in sink.errors)


def test_pipelined_commands_answered_in_order(sink):
    c = Client(sink.port)
    c.send(b"EHLO p\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
    codes = [r.code for r in c.replies(5)]
    assert codes == [250, 250, 250, 250, 354]
    c.send(b"x\r\n.\r\nQUIT\r\n")
    assert [r.code for r in c.replies(2)] == [250, 221]
    assert c.wait_closed(2)
    assert sink.wait_for(1)[0].rcpts == ["b@y", "c@y"]


def test_stop_and_restart_same_port(sink):
    port = sink.port
    sink.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    sink.start()
    assert sink.port == port
    with Client(port) as c:
        assert c.greeting.code == 220


def test_wait_for_times_out_with_a_useful_message(sink):
    t = time.monotonic()
    with pytest.raises(AssertionError, match="1 message"):
        sink.wait_for(1, 0.3)
    assert time.monotonic() - t < 2


def test_helpers():
    assert stuff(b"a\r\n.b\r\n..\r\n.\r\n") == b"a\r\n..b\r\n...\r\n..\r\n.\r\n"
    assert stuff(b"") == b".\r\n"
    head, rest = strip_received(b"Received: from x\r\n\tby y; date\r\nSubject: s\r\n\r\nb\r\n")
    assert head == b"Received: from x\r\n\tby y; date\r\n"
    assert rest == b"Subject: s\r\n\r\nb\r\n"


def test_daemon_harness_finds_sanitizer_reports(tmp_path):
    from conftest import Daemon

    d = Daemon(str(tmp_path), {"listen": "127.0.0.1:1", "log_file": str(tmp_path / "log")}, "x")
    with open(d.stderr_path, "w") as f:
        f.write("jailmail/master[1]: starting\n")
    assert d.sanitizer_reports() == []
    with open(tmp_path / "log", "w") as f:
        f.write("src/queue.c:10:5: runtime error: signed integer overflow\n")
    with open(d.stderr_path, "a") as f:
        f.write("==12==ERROR: AddressSanitizer: heap-use-after-free on address 0x6\n")
    assert len(d.sanitizer_reports()) == 2
    assert d.port == 1
