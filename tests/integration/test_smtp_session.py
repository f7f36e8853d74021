"""The SMTP server's dialogue, command by command (RFC 5321, sendmail's replies)."""

import re
import time

import pytest

from conftest import HOSTNAME, ConnectionClosed, accepted_qid, make_message


def session(smtp, ehlo=True):
    c = smtp()
    if ehlo:
        assert c.ehlo().code == 250
    return c


def test_greeting(smtp):
    c = smtp()
    assert c.greeting.code == 220
    assert re.match(r"^%s ESMTP\b" % re.escape(HOSTNAME), c.greeting.lines[0]), str(c.greeting)


@pytest.mark.conf(max_message_size="10M")
def test_ehlo_extensions(smtp):
    c = smtp()
    r = c.ehlo("client.example")
    assert r.code == 250
    assert r.lines[0].startswith(HOSTNAME), str(r)
    exts = [l.upper() for l in r.lines[1:]]
    assert "PIPELINING" in exts
    assert "8BITMIME" in exts
    assert "ENHANCEDSTATUSCODES" in exts
    sizes = [l for l in exts if l.startswith("SIZE")]
    assert sizes == ["SIZE 10485760"], exts
    # no extension we cannot honour is offered
    for e in exts:
        assert e.split()[0] not in ("CHUNKING", "BINARYMIME", "SMTPUTF8", "DSN"), e


def test_helo_is_single_line(smtp):
    c = smtp()
    r = c.cmd("HELO client.example")
    assert r.code == 250
    assert len(r.raw_lines) == 1 and r.lines[0].startswith(HOSTNAME), str(r)
    # a transaction works after HELO
    assert c.mail("a@client.example").code == 250


def test_mail_before_helo(smtp):
    c = smtp()
    r = c.mail("a@client.example")
    assert r.code == 503 and r.enhanced == "5.0.0", str(r)
    assert "HELO" in r.text


def test_rcpt_before_mail(smtp):
    c = session(smtp)
    r = c.rcpt("b@dest.example")
    assert str(r) == "503 5.0.0 Need MAIL before RCPT"


def test_data_before_rcpt(smtp):
    c = session(smtp)
    assert c.mail("a@client.example").code == 250
    r = c.cmd("DATA")
    assert str(r) == "503 5.0.0 Need RCPT (recipient)"


def test_unknown_command(smtp):
    c = session(smtp)
    r = c.cmd("FROB nicate")
    assert r.code == 500 and r.text.startswith("5.5.1 Command unrecognized"), str(r)
    assert c.cmd("NOOP").code == 250


@pytest.mark.parametrize(
    "line",
    ["MAIL FROM:<a@client.example", "MAIL FROM:a@client.example>", "RCPT TO:", "EHLO"],
    ids=["unclosed", "unopened", "rcpt-empty", "ehlo-no-domain"],
)
def test_bad_syntax_501(smtp, line):
    c = session(smtp)
    if line.startswith("RCPT"):
        assert c.mail("a@client.example").code == 250
    r = c.cmd(line)
    assert r.code == 501, str(r)
    assert c.cmd("NOOP").code == 250


def test_unsupported_mail_parameter_555(smtp):
    c = session(smtp)
    r = c.mail("a@client.example", "FROBNICATE=YES")
    assert r.code == 555, str(r)
    # the transaction did not start
    assert c.mail("a@client.example").code == 250


def test_unsupported_rcpt_parameter_555(smtp):
    c = session(smtp)
    assert c.mail("a@client.example").code == 250
    r = c.rcpt("b@dest.example", "NOTIFY=NEVER")  # DSN is not offered
    assert r.code == 555, str(r)


def test_vrfy_noop_rset_help_quit(smtp):
    c = session(smtp)
    r = c.cmd("VRFY root")
    assert r.code == 252, str(r)
    assert c.cmd("NOOP").code == 250
    assert c.mail("a@client.example").code == 250
    assert c.cmd("RSET").code == 250
    # RSET ended the transaction: a new MAIL is fine
    assert c.mail("a@client.example").code == 250
    r = c.cmd("HELP")
    assert r.code == 214, str(r)
    r = c.cmd("QUIT")
    assert r.code == 221, str(r)
    assert c.wait_closed(3)


def test_second_mail_in_transaction(smtp):
    c = session(smtp)
    assert c.mail("a@client.example").code == 250
    r = c.mail("b@client.example")
    assert str(r) == "503 5.5.0 Sender already specified"


@pytest.mark.conf(max_command_line=2048)
def test_command_line_too_long_and_session_goes_on(smtp):
    c = session(smtp)
    r = c.cmd("NOOP " + "x" * 5000)
    assert 500 <= r.code < 600, str(r)
    # the rest of the over-long line was not taken for a command
    assert c.cmd("NOOP").code == 250
    assert c.mail("a@client.example").code == 250


@pytest.mark.conf(max_bad_commands=25)
def test_too_many_bad_commands(smtp):
    c = session(smtp)
    codes = []
    for i in range(26):
        try:
            r = c.cmd("BOGUS%d" % i)
        except ConnectionClosed:
            break
        codes.append(r.code)
        if r.code == 421:
            break
    assert codes[:24] == [500] * 24, codes
    assert codes[-1] == 421, codes
    assert len(codes) in (25, 26), codes
    assert c.wait_closed(3)


@pytest.mark.conf(max_bad_commands=25)
def test_bad_commands_counted_in_a_row(smtp):
    c = session(smtp)
    for _ in range(3):
        for i in range(20):
            assert c.cmd("BOGUS").code == 500
        assert c.cmd("NOOP").code == 250
    assert c.cmd("NOOP").code == 250


def test_message_accepted_reply(smtp, sink):
    c = session(smtp)
    r = c.sendmail("a@client.example", ["b@dest.example"], make_message(), ehlo=False)
    assert str(r).startswith("250 2.0.0 "), str(r)
    qid = accepted_qid(r)
    assert re.match(r"^[0-9A-Za-z]{14}$", qid), qid
    # and the session is ready for the next transaction
    r2 = c.sendmail("a@client.example", ["c@dest.example"], make_message(), ehlo=False)
    assert accepted_qid(r2) != qid
    assert c.quit().code == 221


def test_ehlo_resets_the_transaction(smtp):
    c = session(smtp)
    assert c.mail("a@client.example").code == 250
    assert c.ehlo().code == 250
    r = c.rcpt("b@dest.example")
    assert r.code == 503, str(r)
    assert c.mail("a@client.example").code == 250


def test_commands_are_case_insensitive(smtp, sink):
    c = smtp()
    assert c.cmd("ehlo client.example").code == 250
    assert c.cmd("mail from:<a@client.example>").code == 250
    assert c.cmd("Rcpt To:<b@dest.example>").code == 250
    r = c.cmd("data")
    assert r.code == 354
    c.send(b"Subject: lower\r\n\r\nx\r\n.\r\n")
    accepted_qid(c.reply())
    assert sink.wait_for(1, 15)[0].rcpts == ["b@dest.example"]


def test_quit_in_a_transaction_sends_nothing(daemon, smtp, sink):
    c = session(smtp)
    assert c.mail("a@client.example").code == 250
    assert c.rcpt("b@dest.example").code == 250
    assert c.cmd("QUIT").code == 221
    assert c.wait_closed(3)
    time.sleep(1.5)
    assert sink.attempts == [] and daemon.queue_files() == []


def test_body_7bit_and_size_parameters_accepted(smtp):
    c = session(smtp)
    assert c.mail("a@client.example", "BODY=7BIT SIZE=100").code == 250
    assert c.cmd("RSET").code == 250
    r = c.mail("a@client.example", "SIZE=abc")
    assert r.code == 501, str(r)
    r = c.mail("a@client.example", "BODY=BINARYMIME")
    assert r.code in (501, 555), str(r)



def test_data_with_an_argument_is_501(smtp, sink):
    """RFC 5321: DATA takes no argument; one is a syntax error, not a 354."""
    c = session(smtp)
    assert c.cmd("MAIL FROM:<a@client.example>").code == 250
    assert c.cmd("RCPT TO:<b@dest.example>").code == 250
    r = c.cmd("DATA now")
    assert r.code == 501, str(r)
    assert str(r).startswith("501 5.5.4"), str(r)
    # the transaction is still there: a plain DATA goes on
    assert c.cmd("DATA").code == 354


@pytest.mark.parametrize("rcpt", ["postmaster", "root@localhost", "root@LOCALHOST.",
                                  "admin@" + HOSTNAME])
def test_local_recipients_refused_without_local_delivery(smtp, sink, rcpt):
    """Mail to our own domains is delivered here or nowhere: never handed to
    the smarthost, where "root@localhost" or "postmaster" would reach the
    smarthost's own mailboxes. Until local delivery exists: User unknown."""
    c = session(smtp)
    assert c.cmd("MAIL FROM:<a@client.example>").code == 250
    r = c.cmd("RCPT TO:<%s>" % rcpt)
    assert str(r) == "550 5.1.1 <%s>... User unknown" % rcpt
    assert c.cmd("RCPT TO:<b@dest.example>").code == 250  # relaying still works
    assert c.data(make_message()).code == 250
    (m,) = sink.wait_for(1, 15)
    assert m.rcpts == ["b@dest.example"]
