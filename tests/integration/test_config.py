"""Start-up with a bad configuration: stop, name file and line, exit 78."""

import os
import re
import subprocess

import pytest

from conftest import BUILD


def start_with(start_daemon, text):
    d = start_daemon(start=False)
    d.write_conf()
    good = open(d.conf_path).read()
    d.write_conf(good + text)
    bad_line = good.count("\n") + 1
    p = subprocess.run(d.command(), capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    return d, p, bad_line


@pytest.mark.parametrize(
    "text",
    [
        "lisen = 127.0.0.1:25\n",
        "max_message_size = ten\n",
        "command_timeout = 5 minutes\n",
        "max_recipients = -1\n",
        "listen = 127.0.0.1:99999\n",
        "run_as_user = root\n",
        "max_message_size\n",
    ],
    ids=["unknown-key", "bad-size", "bad-time", "negative", "bad-port", "root", "no-value"],
)
def test_bad_config_stops_startup(start_daemon, text):
    d, p, line = start_with(start_daemon, text)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 78, (p.returncode, err)
    assert re.search(r"%s:%d: " % (re.escape(d.conf_path), line), err), err
    # nothing was started: no listener, no jail
    assert not os.path.exists(d.qdir)


def test_unknown_key_suggests_the_right_one(start_daemon):
    d, p, line = start_with(start_daemon, "max_recipient = 10\n")
    err = p.stderr.decode()
    assert p.returncode == 78
    assert "max_recipients" in err, err


def test_missing_config_file(start_daemon):
    d = start_daemon(start=False)
    p = subprocess.run(
        [os.path.join(BUILD, "sendmail"), "-bD", "-C", d.conf_path + ".missing"],
        capture_output=True,
        timeout=20,
    )
    assert p.returncode != 0
    assert d.conf_path + ".missing" in p.stderr.decode(), p.stderr


def test_symlink_inside_the_jail_is_refused(start_daemon, workdir):
    """Below the jail directory, the master never follows a symbolic link when
    it makes the queue directory and hands it to the run-as user: a worker
    that planted one must not get root to create or chown a directory
    elsewhere."""
    d = start_daemon(start=False, queue_directory="/var/spool/mq")
    elsewhere = os.path.join(workdir, "elsewhere")
    os.makedirs(elsewhere)
    os.makedirs(os.path.join(d.jail, "var"))
    os.symlink(elsewhere, os.path.join(d.jail, "var", "spool"))
    d.write_conf()
    p = subprocess.run(d.command(), capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 78, (p.returncode, err)
    assert "symbolic links are refused in the jail" in err, err
    assert os.listdir(elsewhere) == []
