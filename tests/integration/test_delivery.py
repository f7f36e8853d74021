"""End to end: client -> daemon -> smarthost (the sink), byte for byte."""

import random
import re
import time

import pytest

from conftest import HOSTNAME, Client, accepted_qid, free_port, make_message, strip_received, stuff, wait_until


def relay(smtp, sink, message, rcpts=("rcpt@dest.example",), sender="sender@client.example", params=""):
    """Sends one message through the daemon; returns the transaction the sink
    received, after checking the envelope and that the data is the message
    exactly, behind one prepended Received: header."""
    c = smtp()
    r = c.sendmail(sender, list(rcpts), message, mail_params=params)
    accepted_qid(r)
    c.quit()
    (m,) = sink.wait_for(1, 15)
    assert m.mail_from == sender
    assert sorted(m.rcpts) == sorted(rcpts)
    trace, rest = strip_received(m.data)
    assert rest == message, "message changed in transit:\nsent %r\ngot  %r" % (message[:300], rest[:300])
    sink.assert_clean()
    return m


def test_plain_text(daemon, smtp, sink):
    msg = make_message(body="Hello,\r\n\r\nthis is a plain message.\r\n-- \r\nme\r\n")
    relay(smtp, sink, msg)


def test_dots(daemon, smtp, sink):
    body = b".\r\n..\r\n.foo\r\n...\r\n. \r\nmiddle\r\n.\r\n"
    msg = make_message(body=body)
    m = relay(smtp, sink, msg)
    # the daemon stuffed exactly the lines that start with a dot on the way out
    assert m.raw == stuff(m.data)[: -len(b".\r\n")]
    assert b"\r\n..foo\r\n" in m.raw


def test_8bit_with_body_8bitmime(daemon, smtp, sink):
    body = "Grüße aus Köln, ça va? – ünïcødé\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n"
    msg = make_message(body=body)
    relay(smtp, sink, msg, params="BODY=8BITMIME")


def test_8bitmime_is_announced_to_the_relay(daemon, smtp, sink):
    msg = make_message(body="caf\xe9\r\n".encode("latin-1"))
    m = relay(smtp, sink, msg, params="BODY=8BITMIME")
    assert "BODY=8BITMIME" in [p.upper() for p in m.mail_params], m.mail_params


def test_very_long_line(daemon, smtp, sink):
    line = ("0123456789abcdef" * 320)[:5000].encode()
    msg = make_message(body=b"before\r\n" + line + b"\r\nafter\r\n")
    m = relay(smtp, sink, msg)
    assert line + b"\r\n" in m.data


def test_binaryish_crlf_clean(daemon, smtp, sink):
    # every byte value but NUL, CR and LF, in lines of varying length
    pool = bytes(b for b in range(1, 256) if b not in (10, 13))
    lines = [pool[i % len(pool) :] + pool[: i % 97] for i in range(0, 2000, 37)]
    body = b"\r\n".join(lines) + b"\r\n"
    msg = make_message(body=body)
    relay(smtp, sink, msg, params="BODY=8BITMIME")


def test_empty_body_and_null_sender(daemon, smtp, sink):
    msg = b"Subject: empty\r\nMessage-ID: <empty@test.example>\r\n\r\n"
    relay(smtp, sink, msg, sender="")


def test_received_header_prepended(daemon, smtp, sink):
    m = relay(smtp, sink, make_message())
    trace, _ = strip_received(m.data)
    assert trace.startswith(b"Received: from "), trace
    text = trace.decode("latin-1")
    assert "127.0.0.1" in text, text
    assert "by %s" % HOSTNAME in text, text
    # the trace header is folded into lines a relay can take
    assert all(len(l) <= 998 for l in trace.split(b"\r\n")), trace


def test_multiple_recipients_one_transaction(daemon, smtp, sink):
    rcpts = ["r%d@dest%d.example" % (i, i % 2) for i in range(5)]
    relay(smtp, sink, make_message(), rcpts=rcpts)
    assert len(sink.attempts) == 1
    assert sink.count("MAIL") == 1


def test_pipelining(daemon, smtp, sink):
    c = smtp()
    c.send(
        b"EHLO pipe.example\r\n"
        b"MAIL FROM:<p@client.example>\r\n"
        b"RCPT TO:<one@dest.example>\r\n"
        b"RCPT TO:<two@dest.example>\r\n"
        b"DATA\r\n"
    )
    replies = c.replies(5)
    assert [r.code for r in replies] == [250, 250, 250, 250, 354], replies
    assert "PIPELINING" in [l.upper() for l in replies[0].lines]
    msg = make_message(subject="pipelined")
    c.send(stuff(msg) + b"QUIT\r\n")
    accepted_qid(c.reply())
    assert c.reply().code == 221
    (m,) = sink.wait_for(1, 15)
    assert m.rcpts == ["one@dest.example", "two@dest.example"]
    assert strip_received(m.data)[1] == msg
    sink.assert_clean()


def test_several_transactions_in_one_session(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    sent = []
    for i in range(5):
        msg = make_message(subject="n%d" % i)
        sent.append(msg)
        accepted_qid(c.sendmail("s@client.example", ["r%d@dest.example" % i], msg, ehlo=False))
    c.quit()
    got = sink.wait_for(5, 20)
    assert sorted(strip_received(m.data)[1] for m in got) == sorted(sent)
    assert len(got) == 5
    sink.assert_clean()
    # the queue is empty again once everything is delivered
    wait_until(lambda: daemon.queue_files() == [], 10, what="empty queue")
    assert re.search(r"stat=Sent", daemon.log())


def test_received_header_names_the_queue_id(daemon, smtp, sink):
    c = smtp()
    qid = accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message()))
    (m,) = sink.wait_for(1, 15)
    trace, _ = strip_received(m.data)
    assert re.search(rb"\bwith ESMTP id " + qid.encode() + rb"\b", trace), trace


def test_byte_by_byte_client(daemon, smtp, sink):
    # every command and the end of data split across TCP segments at every byte
    body = b"a\r\n.\r\n..\r\n.x\r\n\r\n.\r\nend\r\n"
    msg = make_message(body=body)
    c = smtp()
    wire_cmds = [b"EHLO drip.example\r\n", b"MAIL FROM:<d@client.example>\r\n", b"RCPT TO:<r@dest.example>\r\n"]
    for w in wire_cmds:
        for i in range(len(w)):
            c.send(w[i : i + 1])
            time.sleep(0.002)
        assert c.reply().code == 250
    assert c.cmd("DATA").code == 354
    wire = stuff(msg)
    for i in range(len(wire)):
        c.send(wire[i : i + 1])
        time.sleep(0.001)
    accepted_qid(c.reply())
    (m,) = sink.wait_for(1, 15)
    assert strip_received(m.data)[1] == msg


def test_end_of_data_split_in_every_way(daemon, smtp, sink):
    # the final CRLF.CRLF split at each of its positions
    c = smtp()
    assert c.ehlo().code == 250
    sent = []
    for cut in range(1, 5):
        msg = make_message(subject="cut %d" % cut, body="body\r\n.dot\r\n")
        wire = stuff(msg)
        assert c.mail("s@client.example").code == 250
        assert c.rcpt("r@dest.example").code == 250
        assert c.cmd("DATA").code == 354
        split = len(wire) - 5 + cut
        c.send(wire[:split])
        time.sleep(0.05)
        c.send(wire[split:])
        accepted_qid(c.reply())
        sent.append(msg)
    got = sink.wait_for(4, 15)
    assert sorted(strip_received(m.data)[1] for m in got) == sorted(sent)


def test_big_message(daemon, smtp, sink):
    rnd = random.Random(5)
    lines = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz .,-") for _ in range(rnd.randint(0, 200))) for _ in range(40000)]
    body = b"\r\n".join(b"." + l if i % 100 == 0 else l for i, l in enumerate(lines)) + b"\r\n"
    msg = make_message(body=body)
    assert len(msg) > 3_000_000
    m = relay(smtp, sink, msg)
    assert len(m.data) > len(msg)


def test_client_gone_in_data_leaves_nothing(daemon, smtp, sink):
    c = smtp()
    assert c.ehlo().code == 250
    assert c.mail("s@client.example").code == 250
    assert c.rcpt("r@dest.example").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: half\r\n\r\nonly half of the message")
    time.sleep(0.2)
    c.close()
    time.sleep(2)
    assert sink.attempts == []
    assert daemon.queue_files("msg") == []
    wait_until(lambda: daemon.queue_files("tmp") == [], 5, what="tmp/ cleaned")


@pytest.mark.conf(listen=["127.0.0.1:%d" % free_port(), "[::1]:%d" % free_port("::1")])
def test_ipv6_listener(daemon, sink):
    port6 = int(daemon.conf["listen"][1].rsplit(":", 1)[1])
    c = Client(port6, host="::1")
    assert c.greeting.code == 220
    msg = make_message()
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], msg))
    (m,) = sink.wait_for(1, 15)
    trace, rest = strip_received(m.data)
    assert rest == msg
    assert b"IPv6:::1" in trace or b"::1" in trace, trace
    # and the IPv4 one too
    c4 = Client(daemon.port)
    assert c4.greeting.code == 220


def test_message_without_headers(daemon, smtp, sink):
    relay(smtp, sink, b"no header section at all, just text\r\nsecond line\r\n")


def test_header_only_message_without_blank_line(daemon, smtp, sink):
    relay(smtp, sink, b"Subject: only a header\r\nX-Other: folded\r\n\tcontinued\r\n")


def test_trailing_whitespace_kept(daemon, smtp, sink):
    relay(smtp, sink, make_message(body=b"trailing spaces   \r\ntab\t\r\n \r\n\t\r\n"))


@pytest.mark.parametrize("name", ["[127.0.0.1]", "[IPv6:::1]", "client.example"])
def test_address_literal_helo(daemon, smtp, sink, name):
    c = smtp()
    assert c.ehlo(name).code == 250
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message(), ehlo=False))
    (m,) = sink.wait_for(1, 15)
    trace, _ = strip_received(m.data)
    assert name.encode() in trace, trace


def test_hostile_helo_name_does_not_dirty_the_received_header(daemon, smtp, sink):
    c = smtp()
    r = c.cmd(b"EHLO evil\x01\x7f\xff(;name")
    if r.code != 250:
        assert 500 <= r.code < 600, str(r)
        assert c.ehlo("clean.example").code == 250
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message(), ehlo=False))
    (m,) = sink.wait_for(1, 15)
    trace, _ = strip_received(m.data)
    bad = [b for b in trace if (b < 0x20 and b not in (9, 10, 13)) or b > 0x7E]
    assert not bad, "control or 8-bit bytes in the Received header: %r" % trace


@pytest.mark.parametrize(
    "sender,rcpt",
    [
        ('"john doe"@client.example', '"jane q. public"@dest.example'),
        ("Mixed.Case+tag@Client.Example", "UPPER@DEST.EXAMPLE"),
        ("a@[127.0.0.1]", "b@dest.example"),
    ],
    ids=["quoted", "case", "literal-domain"],
)
def test_addresses_relayed_as_given(daemon, smtp, sink, sender, rcpt):
    c = smtp()
    accepted_qid(c.sendmail(sender, [rcpt], make_message()))
    (m,) = sink.wait_for(1, 15)
    assert m.mail_from == sender
    assert m.rcpts == [rcpt]
    sink.assert_clean()
