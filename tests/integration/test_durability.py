"""A 250 reply to end-of-data means the message is on stable storage: kill the
whole daemon (master and workers) with SIGKILL at random moments while 20
clients send 2,000 messages, restart it on the same jail and queue, and check
that every message that got its 250 reaches the smarthost. Duplicates are
allowed (a crash between delivery and removal of the queue file) and printed.

JAILMAIL_SEED=<n> replays a run's kill moments."""

import os
import random
import re
import threading
import time
import uuid

from conftest import Client, ConnectionClosed, stuff, wait_until

CLIENTS = 20
TOTAL = 2000
KILLS = 2
SEND_DEADLINE = 120  # seconds for the sending phase, kills included
DRAIN_DEADLINE = 60  # seconds after the last restart for the queue to drain

MSGID_RE = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r$", re.M | re.I)


def message(msgid, i, n):
    body = ("client %d message %d\r\n" % (i, n)) + ("line of filler text %d\r\n" % n) * random.randint(1, 40)
    return (
        "From: <c%d@client.example>\r\nTo: <r%d@dest.example>\r\nSubject: durability %d/%d\r\n"
        "Message-ID: %s\r\n\r\n%s" % (i, i, i, n, msgid, body)
    ).encode()


class Load:
    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.accepted = {}  # msgid -> qid
        self.unacknowledged = 0  # transactions cut off before the 250 (may arrive or not)
        self.refusals = {}  # reply code -> count
        self.errors = 0
        self.connect_refused = 0
        self.error_samples = []  # the first few client-side failures, for the report
        self.deadline = time.monotonic() + SEND_DEADLINE

    def count(self):
        with self.lock:
            return len(self.accepted)

    def client(self, i, quota, rng):
        sent = 0
        n = 0
        c = None
        source = "127.0.1.%d" % (i + 1)
        while sent < quota and time.monotonic() < self.deadline:
            try:
                if c is None:
                    c = Client(self.port, timeout=15, source=source)
                    if c.greeting.code != 220:
                        raise ConnectionClosed(str(c.greeting))
                    if c.ehlo("load%d.client.example" % i).code != 250:
                        raise ConnectionClosed("EHLO refused")
                n += 1
                msgid = "<dur-%d-%d-%s@client.example>" % (i, n, uuid.uuid4().hex[:12])
                # pipelined envelope, as real clients do
                c.send(
                    b"MAIL FROM:<c%d@client.example>\r\nRCPT TO:<r%d@dest.example>\r\nDATA\r\n" % (i, i)
                )
                codes = [r.code for r in c.replies(3)]
                if codes != [250, 250, 354]:
                    with self.lock:
                        self.refusals[tuple(codes)] = self.refusals.get(tuple(codes), 0) + 1
                    c.cmd("RSET")
                    continue
                with self.lock:
                    self.unacknowledged += 1
                c.send(stuff(message(msgid, i, n)))
                r = c.reply()
                with self.lock:
                    self.unacknowledged -= 1
                    if r.code == 250:
                        self.accepted[msgid] = r.lines[0].split()[1]
                        sent += 1
                    else:
                        self.refusals[r.code] = self.refusals.get(r.code, 0) + 1
                if rng.random() < 0.1:  # now and then a new session
                    c.quit()
                    c = None
            except (OSError, ConnectionClosed, AssertionError, ValueError) as e:
                with self.lock:
                    self.errors += 1
                    if isinstance(e, ConnectionRefusedError):
                        self.connect_refused += 1
                    if len(self.error_samples) < 5:
                        self.error_samples.append("client %d: %s: %s" % (i, type(e).__name__, e))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.02)
        if c is not None:
            c.close()


def test_no_accepted_message_lost_across_sigkills(start_daemon, sink):
    seed = int(os.environ.get("JAILMAIL_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print("seed", seed)
    d = start_daemon(
        retry_min="1s",
        queue_interval="3s",
        max_connections=200,
        max_connections_per_client=50,
        max_deliveries=20,
    )
    load = Load(d.port)
    kill_at = sorted(rng.sample(range(TOTAL // 5, TOTAL * 4 // 5), KILLS))
    kills = []

    threads = [
        threading.Thread(target=load.client, args=(i, TOTAL // CLIENTS, random.Random(seed + i)))
        for i in range(CLIENTS)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    last_restart = None
    try:
        for k in kill_at:
            while load.count() < k and time.monotonic() < load.deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.3))
            at = load.count()
            d.kill()
            kills.append((at, len(sink.messages), d.queue_files()))
            time.sleep(rng.uniform(0.05, 0.5))
            d.start()
            last_restart = time.monotonic()
    finally:
        for t in threads:
            t.join(SEND_DEADLINE + 30)
    send_time = time.monotonic() - t0
    accepted = dict(load.accepted)

    def seen():
        out = {}
        for m in sink.snapshot():
            mm = MSGID_RE.search(m.data)
            if mm:
                k = mm.group(1).decode()
                out[k] = out.get(k, 0) + 1
        return out

    drain_end = max(last_restart or 0, time.monotonic()) + DRAIN_DEADLINE
    while time.monotonic() < drain_end:
        if set(accepted) <= set(seen()):
            break
        time.sleep(0.5)
    got = seen()
    lost = sorted(set(accepted) - set(got))
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    unasked = len(set(got) - set(accepted))
    print(
        "durability: seed=%d sent=%d in %.1fs kills(at accepted, delivered, queued)=%r "
        "delivered=%d duplicates=%d unacknowledged-but-delivered=%d client errors=%d refusals=%r"
        % (
            seed, len(accepted), send_time, [(a, b, len(q)) for a, b, q in kills], len(got),
            duplicates, unasked, load.errors, load.refusals,
        )
    )
    assert len(kills) == KILLS, "the load did not reach the kill points: %d accepted" % len(accepted)
    assert len(accepted) == TOTAL, "only %d of %d messages accepted within %ds" % (len(accepted), TOTAL, SEND_DEADLINE)
    assert not lost, "%d accepted message(s) lost, e.g. %r (qids %r)" % (
        len(lost), lost[:5], [accepted[m] for m in lost[:5]],
    )
    sink.assert_clean(ignore=("lost",))
    assert d.running()


def _delivered_ids(sink):
    out = {}
    for m in sink.snapshot():
        mm = MSGID_RE.search(m.data)
        if mm:
            k = mm.group(1).decode()
            out[k] = out.get(k, 0) + 1
    return out


def _run_load(d, sink, total, disturb, seed, times=3):
    """Runs `total` messages from CLIENTS clients while disturb(i) is called at
    `times` random points; returns the Load."""
    rng = random.Random(seed)
    load = Load(d.port)
    points = sorted(rng.sample(range(total // 6, total * 5 // 6), times))
    threads = [
        threading.Thread(target=load.client, args=(i, total // CLIENTS, random.Random(seed + i)))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        for i, p in enumerate(points):
            while load.count() < p and time.monotonic() < load.deadline:
                time.sleep(0.01)
            disturb(i)
    finally:
        for t in threads:
            t.join(SEND_DEADLINE + 30)
    accepted = dict(load.accepted)
    end = time.monotonic() + DRAIN_DEADLINE
    while time.monotonic() < end and not set(accepted) <= set(_delivered_ids(sink)):
        time.sleep(0.5)
    got = _delivered_ids(sink)
    lost = sorted(set(accepted) - set(got))
    print(
        "seed=%d accepted=%d delivered=%d duplicates=%d client errors=%d refusals=%r"
        % (seed, len(accepted), len(got), sum(n - 1 for n in got.values() if n > 1), load.errors, load.refusals)
    )
    assert len(accepted) == total, "only %d of %d accepted" % (len(accepted), total)
    assert not lost, "%d accepted message(s) lost: %r" % (len(lost), lost[:5])
    sink.assert_clean(ignore=("lost",))
    return load


def test_no_loss_when_workers_are_killed(start_daemon, sink):
    seed = int(os.environ.get("JAILMAIL_SEED") or random.randrange(1 << 30))
    d = start_daemon(retry_min="1s", queue_interval="3s", max_connections=200, max_connections_per_client=50)

    def kill_worker(i):
        smtpd = d.smtpd_pid()
        victim = smtpd if i % 2 == 0 else [p for p in d.pids if p != smtpd][0]
        os.kill(victim, 9)
        wait_until(lambda: len(d.pids) == 2 and victim not in d.pids, 15, 0.05, what="worker restarted")

    _run_load(d, sink, 600, kill_worker, seed)
    assert d.running()


def test_no_loss_and_no_refusal_across_reloads(start_daemon, sink):
    seed = int(os.environ.get("JAILMAIL_SEED") or random.randrange(1 << 30))
    d = start_daemon(retry_min="1s", queue_interval="3s", max_connections=200, max_connections_per_client=50)

    def reload(i):
        d.conf["max_recipients"] = 50 + i
        d.write_conf()
        d.reload()
        # Signals of one kind do not queue: a second SIGHUP sent before the
        # master has taken the first would merge with it. Wait for this one.
        wait_until(lambda: len(re.findall(r"SIGHUP", d.log())) >= i + 1, 10, what="reload %d" % i)

    load = _run_load(d, sink, 1200, reload, seed, times=16)
    assert load.connect_refused == 0
    assert load.errors == 0, "sessions failed across reloads: %r" % load.error_samples
    # a reload must not fail a transaction either (e.g. 451 at end of data)
    assert load.refusals == {}, "transactions refused across reloads: %r\n%s" % (
        load.refusals,
        "\n".join(l for l in d.log().splitlines() if "cannot" in l)[:3000],
    )
    assert d.running()
    assert len(re.findall(r"SIGHUP", d.log())) >= 16
