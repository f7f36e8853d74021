"""The queue: retries, permanent failures, restarts, corrupt files, logs.

The test configuration uses retry_min = 1s and queue_interval = 5s."""

import os
import pwd
import re
import string
import time

from conftest import Client, accepted_qid, make_message, strip_received, wait_until

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def b62(n, width):
    out = ""
    for _ in range(width):
        out = B62[n % 62] + out
        n //= 62
    return out


def fake_qid():
    """A valid-looking queue id (docs/queue-format.md): 6 digits of seconds,
    4 of microseconds, 2 of pid, 2 of counter."""
    t = time.time()
    return b62(int(t), 6) + b62(int((t % 1) * 1e6), 4) + b62(os.getpid(), 2) + b62(3843, 2)


def send(port, rcpts=("rcpt@dest.example",), msg=None, sender="sender@client.example"):
    msg = msg or make_message()
    c = Client(port)
    qid = accepted_qid(c.sendmail(sender, list(rcpts), msg))
    c.quit()
    return qid, msg


def test_temporary_failure_is_retried(daemon, sink):
    sink.script("DATA_END", "451 4.3.0 Try again later", times=1)
    t0 = time.monotonic()
    qid, msg = send(daemon.port)
    (m,) = sink.wait_for(1, 20)
    assert strip_received(m.data)[1] == msg
    assert len(sink.attempts) == 2, sink.attempts
    assert sink.attempts[0].reply.startswith("451")
    # the retry waited for retry_min at least
    assert sink.attempts[1].time - sink.attempts[0].time >= 0.9
    assert time.monotonic() - t0 < 20
    wait_until(lambda: qid not in daemon.queue_files(), 10, what="queue file removed")
    daemon.wait_log(r"%s: to=<rcpt@dest\.example>, .*stat=Deferred" % qid, 5)
    daemon.wait_log(r"%s: to=<rcpt@dest\.example>, .*stat=Sent" % qid, 5)


def test_temporary_failure_at_rcpt_is_retried(daemon, sink):
    sink.script("RCPT", "450 4.2.0 Mailbox busy", times=1, match="busy@")
    send(daemon.port, rcpts=("busy@dest.example",))
    (m,) = sink.wait_for(1, 20)
    assert m.rcpts == ["busy@dest.example"]
    assert sink.count("RCPT", "busy@") == 2


def test_smarthost_down_then_up(daemon, sink):
    sink.stop()
    qid, msg = send(daemon.port)
    assert qid in daemon.queue_files()
    time.sleep(2)  # at least one failed attempt
    sink.start()
    (m,) = sink.wait_for(1, 20)
    assert strip_received(m.data)[1] == msg


def test_permanent_failure_not_retried(daemon, sink):
    sink.script("RCPT", "550 5.1.1 User unknown", times=None, match="nobody@")
    qid, _ = send(daemon.port, rcpts=("nobody@dest.example",))
    daemon.wait_log(r"%s: to=<nobody@dest\.example>, .*stat=" % qid, 10)
    line = [l for l in daemon.log().splitlines() if "to=<nobody@dest.example>" in l][0]
    assert "stat=Sent" not in line and "550" in line, line
    time.sleep(7)  # more than a queue run and several retry_min
    assert sink.count("RCPT", "nobody@") == 1
    # no message for nobody was accepted; only a bounce (to the sender) may follow
    assert all("nobody@dest.example" not in m.rcpts for m in sink.messages)


def test_mixed_recipients_only_the_good_one_delivered_once(daemon, sink):
    sink.script("RCPT", "550 5.1.1 User unknown", times=None, match="nobody@")
    qid, msg = send(daemon.port, rcpts=("good@dest.example", "nobody@dest.example"))
    m = sink.wait_for(1, 15)[0]
    assert m.rcpts == ["good@dest.example"]
    time.sleep(7)
    assert sink.count("RCPT", "nobody@") == 1
    assert sink.count("RCPT", "good@") == 1
    assert sum(1 for a in sink.messages if "good@dest.example" in a.rcpts) == 1


def test_restart_with_a_full_queue(daemon, sink):
    sink.stop()
    sent = [send(daemon.port, rcpts=("r%d@dest.example" % i,)) for i in range(5)]
    qids = {q for q, _ in sent}
    assert qids <= set(daemon.queue_files())
    rc = daemon.stop()
    assert rc == 0, daemon.log_tail()
    assert qids <= set(daemon.queue_files()), "the queue lost messages at stop"
    sink.start()
    daemon.start()
    got = sink.wait_for(5, 20)
    assert sorted(strip_received(m.data)[1] for m in got) == sorted(m for _, m in sent)
    wait_until(lambda: not (qids & set(daemon.queue_files())), 10, what="queue emptied")


def test_restart_after_sigkill_with_a_full_queue(daemon, sink):
    sink.stop()
    sent = [send(daemon.port) for _ in range(3)]
    daemon.kill()
    sink.start()
    daemon.start()
    got = sink.wait_for(3, 20)
    assert sorted(strip_received(m.data)[1] for m in got) == sorted(m for _, m in sent)


def test_corrupt_queue_file_moved_aside(daemon, sink):
    qid = fake_qid()
    path = os.path.join(daemon.qdir, "msg", qid)
    with open(path, "wb") as f:
        f.write(b"this is not a queue file\n\x00\xff garbage\n")
    st = os.stat(os.path.join(daemon.qdir, "msg"))
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, 0o600)
    corrupt = os.path.join(daemon.qdir, "corrupt", qid)
    wait_until(lambda: os.path.exists(corrupt), 15, 0.2, what="file moved to corrupt/")
    assert not os.path.exists(path)
    daemon.wait_log(r"%s: .*corrupt" % qid, 5)
    assert daemon.running()
    # and the daemon goes on delivering
    _, msg = send(daemon.port)
    assert strip_received(sink.wait_for(1, 15)[0].data)[1] == msg


def test_log_lines(daemon, sink):
    msgid = "<log-test-1@client.example>"
    msg = make_message(msgid=msgid)
    qid, _ = send(daemon.port, rcpts=("one@dest.example", "two@dest.example"), msg=msg)
    sink.wait_for(1, 15)
    (m,) = daemon.wait_log(r"^.*%s: from=<sender@client\.example>, size=(\d+), .*$" % qid, 5)
    line = m.group(0)
    assert int(m.group(1)) >= len(msg), line
    assert "nrcpts=2" in line, line
    assert "msgid=%s" % msgid in line, line
    assert "proto=ESMTP" in line, line
    assert re.search(r"relay=.*127\.0\.0\.1", line), line
    sent = daemon.wait_log(r"^.*%s: to=<(one|two)@dest\.example>, .*stat=Sent.*$" % qid, 5, count=1)
    assert all("relay=" in s.group(0) for s in sent)
    # every recipient is accounted for, in one or two lines
    text = "\n".join(l for l in daemon.log().splitlines() if qid in l and "stat=Sent" in l)
    assert "one@dest.example" in text and "two@dest.example" in text, text


def test_queue_file_on_disk(daemon, sink):
    sink.script("DATA_END", "451 4.3.0 keep it queued", times=None)
    msg = make_message(msgid="<on-disk@client.example>")
    qid, _ = send(daemon.port, rcpts=("a@dest.example", "b@dest.example"), msg=msg)
    path = os.path.join(daemon.qdir, "msg", qid)
    st = os.stat(path)
    assert st.st_uid == pwd.getpwnam(daemon.conf["run_as_user"]).pw_uid
    assert st.st_mode & 0o077 == 0, oct(st.st_mode)
    data = open(path, "rb").read()
    assert data.startswith(b"jailmail-queue 1\n")
    assert b"\nid %s\n" % qid.encode() in data
    assert b"\nsender sender@client.example\n" in data
    assert b"a@dest.example" in data and b"b@dest.example" in data
    assert data.endswith(msg), "the message is stored exactly, after the envelope"
    assert os.listdir(os.path.join(daemon.qdir, "tmp")) == []


def test_log_file(start_daemon, sink, workdir):
    log = os.path.join(workdir, "maillog")
    d = start_daemon(log_file=log)
    qid, _ = send(d.port)
    sink.wait_for(1, 15)
    wait_until(lambda: os.path.exists(log) and "%s: to=<rcpt@dest.example>" % qid in open(log).read(), 10, what="log_file line")
    text = open(log).read()
    assert "%s: from=<sender@client.example>" % qid in text
    with open(d.stderr_path) as f:
        assert qid not in f.read(), "log lines went to stderr too"


def test_connection_dropped_at_end_of_data_is_retried(daemon, sink):
    sink.script("DATA_END", action="drop", times=1)
    _, msg = send(daemon.port)
    (m,) = sink.wait_for(1, 20)
    assert strip_received(m.data)[1] == msg
    assert len(sink.attempts) == 2
    sink.assert_clean(ignore=("lost",))


def test_smarthost_greeting_421_is_retried(daemon, sink):
    sink.script("CONNECT", "421 4.3.2 not now", times=2)
    _, msg = send(daemon.port)
    (m,) = sink.wait_for(1, 20)
    assert strip_received(m.data)[1] == msg


def test_permanent_failure_at_end_of_data_not_retried(daemon, sink):
    sink.script("DATA_END", "554 5.6.0 Content refused", times=None, match="")
    qid, _ = send(daemon.port, rcpts=("refused@dest.example",))
    daemon.wait_log(r"%s: to=<refused@dest\.example>, .*stat=" % qid, 10)
    time.sleep(7)
    tries = [a for a in sink.attempts if "refused@dest.example" in a.rcpts]
    assert len(tries) == 1, tries
