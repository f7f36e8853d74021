"""The process tree: supervision, reload, shutdown, and the jail."""

import grp
import os
import pwd
import signal
import socket
import threading
import time

import pytest

from conftest import (
    Client,
    ConnectionClosed,
    accepted_qid,
    make_message,
    proc_status,
    stuff,
    strip_received,
    wait_until,
)


def greeted(port):
    return greeted_at("127.0.0.1", port)


def listening_inodes(port):
    """Socket inodes of the TCP listeners on port (state 0A = LISTEN)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                p = line.split()
                if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "0A":
                    out.add(p[9])
    return out


def test_smtpd_worker_killed_is_restarted(daemon, sink):
    old = daemon.smtpd_pid()
    assert old != daemon.pid and old in daemon.pids
    os.kill(old, signal.SIGKILL)
    daemon.wait_log(r"smtpd.*(died|killed|signal)", 5)
    wait_until(lambda: greeted(daemon.port), 10, 0.2, what="a new smtpd answering 220")
    new = daemon.smtpd_pid()
    assert new != old
    assert daemon.running()
    # and it works end to end
    c = Client(daemon.port)
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message()))
    sink.wait_for(1, 15)


def test_queue_worker_killed_is_restarted(daemon, sink):
    smtpd = daemon.smtpd_pid()
    others = [p for p in daemon.pids if p != smtpd]
    assert len(others) == 1, daemon.workers()
    os.kill(others[0], signal.SIGKILL)
    wait_until(lambda: len(daemon.pids) == 2 and others[0] not in daemon.pids, 10, 0.2, what="queue worker back")
    c = Client(daemon.port)
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message()))
    sink.wait_for(1, 15)


def _rewrite_conf(daemon, **changes):
    daemon.conf.update(changes)
    daemon.write_conf()


def test_sighup_applies_new_config_and_keeps_listening(daemon, sink):
    _rewrite_conf(daemon, max_recipients=2)
    daemon.reload()
    daemon.wait_log(r"SIGHUP", 5)

    def limit_is(n):
        c = Client(daemon.port)
        c.ehlo()
        c.mail("s@client.example")
        codes = [c.rcpt("r%d@dest.example" % i).code for i in range(n + 1)]
        c.close()
        return codes == [250] * n + [452]

    wait_until(lambda: limit_is(2), 10, 0.2, what="max_recipients=2 in force")

    before = listening_inodes(daemon.port)
    assert before
    old_session = Client(daemon.port)
    assert old_session.ehlo().code == 250

    # connect continuously during the reload: no connection may be refused
    refused = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
                s.close()
            except ConnectionRefusedError as e:
                refused.append(e)
            time.sleep(0.01)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        _rewrite_conf(daemon, max_recipients=5)
        daemon.reload()
        wait_until(lambda: limit_is(5), 10, 0.2, what="max_recipients=5 in force")
    finally:
        stop.set()
        t.join()
    assert refused == [], "connections refused during the reload"
    assert listening_inodes(daemon.port) == before, "the listening socket was replaced"

    # the session that was open across the reload still works to the end
    msg = make_message(subject="across the reload")
    r = old_session.sendmail("s@client.example", ["r@dest.example"], msg, ehlo=False)
    accepted_qid(r)
    assert old_session.quit().code == 221
    got = sink.wait_for(1, 15)
    assert strip_received(got[0].data)[1] == msg


def test_sighup_with_broken_config_keeps_the_old_one(daemon, sink):
    _rewrite_conf(daemon, max_recipients=2)
    daemon.reload()
    daemon.wait_log(r"SIGHUP", 5)
    time.sleep(1)
    good_text = open(daemon.conf_path).read()
    with open(daemon.conf_path, "w") as f:
        f.write(good_text + "max_recipients = lots\n")
    bad_line = good_text.count("\n") + 1
    daemon.reload()
    daemon.wait_log(r"%s:%d:" % (daemon.conf_path.replace(".", r"\."), bad_line), 5)
    time.sleep(0.5)
    assert daemon.running()
    c = Client(daemon.port)
    assert c.greeting.code == 220
    c.ehlo()
    c.mail("s@client.example")
    assert [c.rcpt("r%d@dest.example" % i).code for i in range(3)] == [250, 250, 452]
    assert c.quit().code == 221


def test_sigterm_lets_data_finish_then_exits_0(daemon, sink):
    idle = Client(daemon.port)
    assert idle.ehlo().code == 250
    c = Client(daemon.port)
    assert c.ehlo().code == 250
    assert c.mail("s@client.example").code == 250
    assert c.rcpt("r@dest.example").code == 250
    assert c.cmd("DATA").code == 354
    msg = make_message(subject="in flight at SIGTERM", body="x\r\n" * 1000)
    wire = stuff(msg)
    c.send(wire[:1000])
    daemon.send_signal(signal.SIGTERM)
    # the idle session is told to go
    r = idle.reply(timeout=5)
    assert r.code == 421, str(r)
    assert idle.wait_closed(3)
    time.sleep(1)
    assert daemon.running(), "the daemon did not wait for the session in DATA"
    c.send(wire[1000:])
    qid = accepted_qid(c.reply(timeout=10))
    try:
        c.quit()
    except OSError:
        pass
    rc = daemon.proc.wait(15)
    assert rc == 0, daemon.log_tail()
    # the message is safe: delivered already, or on disk for the next start
    if not any(strip_received(m.data)[1] == msg for m in sink.messages):
        assert qid in daemon.queue_files(), "accepted message neither delivered nor queued"
        daemon.start()
        wait_until(
            lambda: any(strip_received(m.data)[1] == msg for m in sink.messages), 15, what="delivery after restart"
        )


def test_sigterm_new_connections_not_served(daemon):
    c = Client(daemon.port)
    assert c.ehlo().code == 250
    assert c.mail("s@client.example").code == 250
    assert c.rcpt("r@dest.example").code == 250
    assert c.cmd("DATA").code == 354  # keeps the daemon in its drain
    daemon.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:
        n = Client(daemon.port, timeout=3)
        assert n.greeting.code != 220, "a new session was greeted during shutdown"
    except (ConnectionRefusedError, ConnectionClosed, ConnectionResetError, socket.timeout):
        pass
    c.send(b".\r\n")
    c.reply()


def test_shutdown_deadline_is_enforced(start_daemon):
    d = start_daemon(shutdown_timeout="2s")
    c = Client(d.port)
    c.ehlo()
    c.mail("s@client.example")
    c.rcpt("r@dest.example")
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: never finished\r\n\r\n")
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    d.proc.wait(15)
    assert time.monotonic() - t0 < 8
    assert d.queue_files("msg") == []


def test_workers_are_jailed_and_unprivileged(daemon):
    pw = pwd.getpwnam(daemon.conf["run_as_user"])
    gid = grp.getgrnam(daemon.conf["run_as_group"]).gr_gid
    jail = os.path.realpath(daemon.jail)
    assert os.readlink("/proc/%d/root" % daemon.pid) == "/"
    workers = daemon.pids
    assert len(workers) >= 2, daemon.workers()
    smtpd = daemon.smtpd_pid()
    assert smtpd in workers
    for pid in workers:
        assert os.readlink("/proc/%d/root" % pid) == jail, pid
        st = proc_status(pid)
        assert st["Uid"].split() == [str(pw.pw_uid)] * 4, (pid, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (pid, st["Gid"])
        assert st["Groups"] == "", (pid, st["Groups"])
        assert st["NoNewPrivs"] == "1", pid
        assert st["CapEff"] == "0000000000000000", (pid, st["CapEff"])
        assert st["CapPrm"] == "0000000000000000", (pid, st["CapPrm"])


def test_queue_dir_belongs_to_the_run_as_user(daemon):
    pw = pwd.getpwnam(daemon.conf["run_as_user"])
    st = os.stat(daemon.qdir)
    assert st.st_uid == pw.pw_uid
    assert st.st_mode & 0o077 == 0, oct(st.st_mode)
    # the jail itself is root's: the run-as user cannot change it
    jst = os.stat(daemon.jail)
    assert jst.st_uid == 0 and jst.st_mode & 0o022 == 0, oct(jst.st_mode)


def test_master_sigkilled_alone_takes_workers_down(daemon, sink):
    workers = daemon.pids
    assert len(workers) >= 2
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait(5)

    def gone():
        return all(not os.path.exists("/proc/%d" % p) or _zombie(p) for p in workers)

    wait_until(gone, 10, 0.1, what="workers exit after the master died")
    # the port is free again: a new daemon starts on it and works
    daemon.start()
    c = Client(daemon.port)
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message()))
    sink.wait_for(1, 15)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sighup_new_smarthost(daemon, sink):
    from sink import Sink

    other = Sink().start()
    try:
        daemon.conf["smarthost"] = "[127.0.0.1]:%d" % other.port
        daemon.write_conf()
        daemon.reload()
        daemon.wait_log(r"SIGHUP", 5)
        time.sleep(1)
        c = Client(daemon.port)
        msg = make_message(subject="to the new smarthost")
        accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], msg))
        (m,) = other.wait_for(1, 15)
        assert strip_received(m.data)[1] == msg
        assert sink.messages == []
        other.assert_clean()
    finally:
        other.stop()


def test_sighup_new_size_limit_in_ehlo(daemon):
    daemon.conf["max_message_size"] = "1M"
    daemon.write_conf()
    daemon.reload()

    def size_is(n):
        c = Client(daemon.port)
        r = c.ehlo()
        c.close()
        return "SIZE %d" % n in r.lines

    wait_until(lambda: size_is(1048576), 10, 0.2, what="SIZE 1048576 after reload")


def test_sigterm_during_outbound_delivery(daemon, sink):
    sink.script("DATA_END", "250 2.0.0 slow but fine", delay=3, times=1)
    c = Client(daemon.port)
    msg = make_message(subject="slow smarthost")
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], msg))
    c.quit()
    wait_until(lambda: sink.count("DATA") >= 1, 10, what="delivery under way")
    t0 = time.monotonic()
    rc = daemon.stop()
    assert rc == 0, daemon.log_tail()
    assert time.monotonic() - t0 < 12
    delivered = any(strip_received(m.data)[1] == msg for m in sink.messages)
    if not delivered:
        assert daemon.queue_files(), "message neither delivered nor kept"
    daemon.start()
    wait_until(lambda: any(strip_received(m.data)[1] == msg for m in sink.messages), 15, what="delivered")


def test_quick_restarts(daemon, sink):
    for i in range(5):
        assert daemon.stop() == 0, daemon.log_tail()
        assert daemon.pids == []
        daemon.start()
    c = Client(daemon.port)
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], make_message()))
    sink.wait_for(1, 15)


def test_reload_refused_for_a_busy_port_keeps_everything(daemon, sink):
    from sink import Sink

    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    other = Sink().start()  # the new configuration's smarthost: must not be used
    try:
        old_listen = daemon.conf["listen"]
        daemon.conf["listen"] = [old_listen, "127.0.0.1:%d" % busy.getsockname()[1]]
        daemon.conf["smarthost"] = "[127.0.0.1]:%d" % other.port
        daemon.conf["max_recipients"] = 2
        daemon.write_conf()
        daemon.reload()
        daemon.wait_log(r"reload refused", 5)
        time.sleep(1)
        assert daemon.running()
        c = Client(daemon.port)
        c.ehlo()
        c.mail("s@client.example")
        codes = [c.rcpt("r%d@dest.example" % i).code for i in range(3)]
        assert codes == [250, 250, 250], "the refused configuration was applied: %r" % codes
        msg = make_message(subject="after a refused reload")
        accepted_qid(c.data(msg))
        (m,) = sink.wait_for(1, 15)
        assert strip_received(m.data)[1] == msg
        assert other.messages == [] and other.connections == 0
    finally:
        other.stop()
        busy.close()


def test_delivery_goes_on_after_a_broken_reload(daemon, sink):
    good = open(daemon.conf_path).read()
    with open(daemon.conf_path, "w") as f:
        f.write(good + "queue_interval = soon\n")
    daemon.reload()
    daemon.wait_log(r"reload refused", 5)
    time.sleep(1)
    c = Client(daemon.port)
    msg = make_message(subject="after a broken reload")
    accepted_qid(c.sendmail("s@client.example", ["r@dest.example"], msg))
    (m,) = sink.wait_for(1, 15)
    assert strip_received(m.data)[1] == msg


def test_reload_removes_and_adds_back_a_listen_address(start_daemon, sink):
    from conftest import free_port

    a, b = "127.0.0.1:%d" % free_port(), "127.0.0.3:%d" % free_port("127.0.0.3")
    d = start_daemon(listen=[a, b])
    port_b = int(b.rsplit(":", 1)[1])
    held = Client(d.port)  # an open session keeps the old smtpd retiring
    assert held.ehlo().code == 250
    assert greeted_at("127.0.0.3", port_b)

    d.conf["listen"] = [a]
    d.write_conf()
    d.reload()
    d.wait_log(r"SIGHUP", 5)

    def b_closed():
        try:
            s = socket.create_connection(("127.0.0.3", port_b), timeout=2)
        except ConnectionRefusedError:
            return True
        s.close()
        return False

    wait_until(b_closed, 5, 0.2, what="the removed address refusing connections")
    assert held.cmd("NOOP").code == 250

    d.conf["listen"] = [a, b]
    d.write_conf()
    d.reload()
    wait_until(lambda: greeted_at("127.0.0.3", port_b), 5, 0.2, what="the address back")
    assert "reload refused" not in d.log(), d.log_tail()
    assert held.cmd("NOOP").code == 250
    held.quit()


def greeted_at(host, port):
    try:
        c = Client(port, host=host, timeout=3)
    except (OSError, ConnectionClosed):
        return False
    ok = c.greeting.code == 220
    c.close()
    return ok


def _fd_targets(pid):
    """{fd number: what it refers to} of a process, from /proc."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass
    return out


def test_workers_hold_none_of_the_masters_descriptors(start_daemon, workdir):
    """Forked without exec, a worker would inherit the master's log file, its
    epoll instance and libevent's signal pipe (through which it could send the
    master fake signals). Each worker keeps only its own: the standard three,
    its IPC socket, the listening sockets (smtpd), and what it made itself."""
    log_file = os.path.join(workdir, "maillog")
    daemon = start_daemon(log_file=log_file)
    master = _fd_targets(daemon.pid)
    assert log_file in master.values(), master  # the master does hold it
    listening = set(master[fd] for fd in master if fd > 2 and master[fd].startswith("socket:"))
    shared_std = {master.get(fd) for fd in (0, 1, 2)}
    for pid in daemon.pids:
        mine = _fd_targets(pid)
        assert log_file not in mine.values(), (pid, mine)
        epolls = [t for t in mine.values() if t == "anon_inode:[eventpoll]"]
        assert len(epolls) == 1, (pid, mine)  # its own event loop only
        for fd, target in mine.items():
            if fd <= 2:
                continue
            if target.startswith("pipe:"):
                assert target not in master.values(), (pid, fd, target)
            if target.startswith("socket:") and target in master.values():
                assert target in listening, (pid, fd, target)
            assert target not in shared_std or fd <= 2, (pid, fd, target)
