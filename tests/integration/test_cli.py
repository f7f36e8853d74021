"""The command line: one binary acting by its name, sendmail's daemon flags,
and a clear refusal (exit 64) for everything not built yet."""

import os
import signal
import subprocess

import pytest

from conftest import BUILD, Client, wait_until


def run(name, *args, timeout=10):
    return subprocess.run([os.path.join(BUILD, name), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.mark.parametrize("args,what", [
    (["-t"], "-t is not supported yet"),
    (["-t", "-i"], "-t is not supported yet"),
    (["-bp"], "-bp is not supported yet"),
    (["-bs"], "-bs is not supported yet"),
    (["-bi"], "-bi is not supported yet"),
    (["-q"], "-q (run the queue once) is not supported yet"),
    (["-qRexample.com"], "-q with a selection is not supported yet"),
    (["-q15m"], "-q without -bd (a queue runner alone) is not supported yet"),
    (["user@example.com"], "sending a message is not supported yet"),
    ([], "sending a message is not supported yet"),
])
def test_sendmail_flags_not_built_yet_exit_64(args, what):
    r = run("sendmail", *args)
    assert r.returncode == 64, r
    assert r.stderr.strip() == "sendmail: " + what, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("name", ["mailq", "newaliases"])
def test_other_names_not_built_yet_exit_64(name):
    r = run(name)
    assert r.returncode == 64, r
    assert "%s: %s is not supported yet" % (name, name) in r.stderr


@pytest.mark.parametrize("args", [["-Z"], ["-bX"], ["-b"], ["-C"], ["-bd", "-C", ""]])
def test_unknown_or_incomplete_flags_give_usage(args):
    r = run("sendmail", *args)
    assert r.returncode == 64, r
    assert r.stderr.startswith("usage: sendmail -bd|-bD"), r.stderr


@pytest.mark.parametrize("bad", ["-qx", "-q15x", "-q0", "-q99999999d", "-q1m-"])
def test_bad_queue_interval(bad):
    r = run("sendmail", "-bD", bad)
    assert r.returncode == 64, r
    assert "not an interval" in r.stderr, r.stderr


def test_jailmail_dispatches_by_subcommand():
    r = run("jailmail", "version")
    assert r.returncode == 0 and r.stdout.startswith("jailmail "), r
    r = run("jailmail", "sendmail", "-t")
    assert r.returncode == 64 and "sendmail: -t is not supported yet" in r.stderr, r
    r = run("jailmail", "jail", "check")
    assert r.returncode == 64 and "jail is not supported yet" in r.stderr, r
    r = run("jailmail")
    assert r.returncode == 64 and r.stderr.startswith("usage: jailmail"), r


def _masters_with(conf_path):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/status" % d) as f:
                uid = [l for l in f if l.startswith("Uid:")][0].split()[1]
        except (OSError, IndexError):
            continue
        if conf_path.encode() in argv and uid == "0":
            out.append(int(d))
    return out


def test_bd_goes_to_the_background_and_serves(start_daemon):
    """-bd: the command returns 0 at once, the daemon lives on in its own
    session, greets clients, and stops on SIGTERM."""
    d = start_daemon(start=False)
    conf = d.write_conf()
    r = run("sendmail", "-bd", "-q1m", "-C", conf)
    assert r.returncode == 0, r
    masters = wait_until(lambda: _masters_with(conf), 10, what="background master")
    assert len(masters) == 1, masters
    pid = masters[0]
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) == pid, "the daemon leads its own session (setsid)"
        with Client(d.port) as c:
            assert c.cmd("NOOP").code == 250
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _masters_with(conf) == [], 20,
               what="background daemon gone")

