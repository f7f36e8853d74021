"""makemap, the real binary ($JAILMAIL_BUILD/makemap and `jailmail makemap`):
flags, messages in sendmail's words, exit codes (sysexits), -u round trips,
mode 0640, and the atomic replacement (an I/O error leaves the old map)."""

import os
import stat
import subprocess

import pytest

from conftest import BUILD

MAKEMAP = os.path.join(BUILD, "makemap")

ACCESS = (
    "# access: relay control\n"
    "Connect:192.168.1\tRELAY\n"
    "Connect:10.0.0.7 REJECT\n"
    "From:Spammer@Example.COM 554 Go away\n"
    "To:partner.example  RELAY\n"
    "\n"
    "example.net\tERROR:5.7.1:550 Not here\n"
)


def run(args, input="", cwd=None, argv0=MAKEMAP, stdin=None):
    kw = {"stdin": stdin} if stdin is not None else {"input": input.encode()}
    p = subprocess.run([argv0] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30, **kw)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def dump(type_, name, *flags):
    rc, out, err = run(list(flags) + ["-u", type_, name])
    assert rc == 0, err
    return out


def as_pairs(text, sep="\t"):
    return sorted(tuple(line.split(sep, 1)) for line in text.splitlines())


@pytest.fixture
def mapdir(workdir):
    d = os.path.join(workdir, "maps")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.mark.parametrize("type_,suffix", [("hash", ".db"), ("cdb", ".cdb")])
def test_build_and_dump_round_trip(mapdir, type_, suffix):
    name = os.path.join(mapdir, "access")
    rc, out, err = run([type_, name], ACCESS)
    assert (rc, out, err) == (0, "", "")
    st = os.stat(name + suffix)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert as_pairs(dump(type_, name)) == [
        ("connect:10.0.0.7", "REJECT"),
        ("connect:192.168.1", "RELAY"),
        ("example.net", "ERROR:5.7.1:550 Not here"),
        ("from:spammer@example.com", "554 Go away"),
        ("to:partner.example", "RELAY"),
    ]
    # the dump is valid input: building from it gives the same map back
    rc, _, err = run([type_, name + "2"], dump(type_, name))
    assert rc == 0, err
    assert dump(type_, name + "2") == dump(type_, name)


def test_the_classic_command(mapdir):
    """`makemap hash /etc/mail/access < /etc/mail/access`: the text file and
    the map side by side, the map named with .db."""
    text = os.path.join(mapdir, "access")
    with open(text, "w") as f:
        f.write(ACCESS)
    with open(text) as f:
        rc, out, err = run(["hash", text], stdin=f)
    assert (rc, err) == (0, "")
    assert os.path.exists(text + ".db")
    with open(text) as f:
        assert f.read() == ACCESS  # the input is untouched
    assert "connect:192.168.1\tRELAY" in dump("hash", text)
    # the name with its suffix is the same map
    assert dump("hash", text + ".db") == dump("hash", text)


def test_jailmail_makemap_and_list(mapdir):
    name = os.path.join(mapdir, "m")
    rc, _, err = run(["makemap", "cdb", name], "a b\n", argv0=os.path.join(BUILD, "jailmail"))
    assert rc == 0, err
    assert dump("cdb", name) == "a\tb\n"
    rc, out, err = run(["-l"])
    assert rc == 0
    assert out.split() == ["hash", "cdb"]


@pytest.mark.parametrize("type_", ["hash", "cdb"])
def test_data_errors_name_the_line_and_go_on(mapdir, type_):
    name = os.path.join(mapdir, "access")
    text = ("good1 OK\n"
            " leading space\n"
            "novalue\n"
            "novalue2   \t\n"
            "good1 second\n"
            + "x" * 1100 + " long\n"
            + "good2 OK\n")
    rc, out, err = run([type_, name], text)
    assert rc == 65
    assert err.splitlines() == [
        "makemap: %s: line 2: syntax error (leading space)" % name,
        "makemap: %s: line 3: no RHS for LHS novalue" % name,
        "makemap: %s: line 4: no RHS for LHS novalue2" % name,
        "makemap: %s: line 5: key good1: duplicate key" % name,
        "makemap: %s: line 6: line too long (1022 bytes max)" % name,
    ]
    # the good lines are in the map, the first value of a duplicate kept
    assert as_pairs(dump(type_, name)) == [("good1", "OK"), ("good2", "OK")]


def test_message_uses_the_name_as_given(mapdir):
    rc, _, err = run(["hash", "access"], "a\n", cwd=mapdir)
    assert rc == 65
    assert err == "makemap: access: line 1: no RHS for LHS a\n"


@pytest.mark.parametrize("type_", ["hash", "cdb"])
def test_replace_and_duplicates(mapdir, type_):
    name = os.path.join(mapdir, "dup")
    text = "k first\nk second\n"
    rc, _, _ = run(["-r", type_, name], text)
    assert rc == 0
    assert dump(type_, name) == "k\tsecond\n"
    rc, _, err = run(["-d", type_, name], text)
    assert (rc, err) == (0, "")
    assert sorted(dump(type_, name).splitlines()) == ["k\tfirst", "k\tsecond"]


def test_allow_empty_fold_delimiter_comment(mapdir):
    name = os.path.join(mapdir, "flags")
    rc, _, err = run(["-e", "hash", name], "Empty\nKey Value\n")
    assert (rc, err) == (0, "")
    assert as_pairs(dump("hash", name)) == [("empty", ""), ("key", "Value")]
    rc, _, err = run(["-f", "hash", name], "MiXed Value\n")
    assert (rc, err) == (0, "")
    assert dump("hash", name) == "MiXed\tValue\n"
    rc, _, err = run(["-t", ":", "hash", name], "Key With Space:v a l\n")
    assert (rc, err) == (0, "")
    assert dump("hash", name, "-t", ":") == "key with space:v a l\n"
    rc, _, err = run(["-D", ";", "hash", name], "; comment\n#hash value\n")
    assert (rc, err) == (0, "")
    assert dump("hash", name) == "#hash\tvalue\n"
    # attached values too, as getopt allows
    rc, _, err = run(["-D;", "-t:", "hash", name], ";x\na:b\n")
    assert (rc, err) == (0, "")
    assert dump("hash", name, "-t:") == "a:b\n"


def test_verbose(mapdir):
    rc, out, err = run(["-v", "cdb", os.path.join(mapdir, "v")], "Key Value\n")
    assert (rc, err) == (0, "")
    assert out == "key=`key', val=`Value'\n"


# How key "abc" and value "defg" lie in the file, with and without -N: a
# Berkeley DB hash page holds the value, then the key, each after a type
# byte (1, H_KEYDATA); a cdb record is the key followed by the value.
STORED = {
    ("hash", True): b"\x01defg\x00\x01abc\x00",
    ("hash", False): b"\x01defg\x01abc",
    ("cdb", True): b"abc\x00defg\x00",
    ("cdb", False): b"abcdefg",
}


@pytest.mark.parametrize("type_,suffix", [("hash", ".db"), ("cdb", ".cdb")])
def test_include_nul(mapdir, type_, suffix):
    """-N stores the NUL of keys and values, as sendmail's makemap -N;
    without it neither carries one, as sendmail's makemap without -N."""
    name = os.path.join(mapdir, "n")
    for with_nul in (True, False):
        rc, _, _ = run((["-N"] if with_nul else []) + [type_, name], "abc defg\n")
        assert rc == 0
        with open(name + suffix, "rb") as f:
            data = f.read()
        assert STORED[(type_, with_nul)] in data
        assert STORED[(type_, not with_nul)] not in data
        assert dump(type_, name) == "abc\tdefg\n"  # dumped without the NUL


def test_append_hash_only(mapdir):
    name = os.path.join(mapdir, "o")
    assert run(["hash", name], "a 1\n")[0] == 0
    rc, _, err = run(["-o", "hash", name], "b 2\na 3\n")
    assert rc == 65
    assert "line 2: key a: duplicate key" in err
    assert as_pairs(dump("hash", name)) == [("a", "1"), ("b", "2")]
    rc, _, err = run(["-o", "cdb", name], "b 2\n")
    assert rc == 64
    assert "hash maps only" in err


@pytest.mark.parametrize("args", [
    [], ["hash"], ["hash", "a", "b"], ["-x", "hash", "m"], ["-t"], ["-t", "ab", "hash", "m"],
    ["-D"], ["hash", ""],
])
def test_usage(mapdir, args):
    rc, out, err = run(args, cwd=mapdir)
    assert rc == 64
    assert err.startswith("usage: makemap")
    assert os.listdir(mapdir) == []


def test_unknown_type(mapdir):
    rc, _, err = run(["btree", "m"], "a b\n", cwd=mapdir)
    assert rc == 64
    assert "unsupported map type btree" in err
    assert os.listdir(mapdir) == []


def test_cannot_create(mapdir):
    rc, _, err = run(["hash", os.path.join(mapdir, "no", "such", "dir", "m")], "a b\n")
    assert rc == 73
    assert "cannot create" in err
    rc, _, err = run(["-u", "cdb", os.path.join(mapdir, "missing")])
    assert rc == 73
    assert "missing.cdb" in err


@pytest.mark.parametrize("type_,suffix", [("hash", ".db"), ("cdb", ".cdb")])
def test_io_error_keeps_the_old_map(mapdir, type_, suffix):
    name = os.path.join(mapdir, "access")
    assert run([type_, name], "old value\n")[0] == 0
    before = os.stat(name + suffix)
    # reading a directory as standard input fails with EISDIR
    fd = os.open(mapdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rc, _, err = run([type_, name], stdin=fd)
    finally:
        os.close(fd)
    assert rc == 74
    assert "read error" in err and "not replaced" in err
    after = os.stat(name + suffix)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert dump(type_, name) == "old\tvalue\n"
    assert sorted(os.listdir(mapdir)) == sorted(["access" + suffix])  # no temporary file left


@pytest.mark.parametrize("type_,suffix", [("hash", ".db"), ("cdb", ".cdb")])
def test_replacement_is_a_rename(mapdir, type_, suffix):
    """A reader holding the old file keeps it whole: the new map is a new
    inode renamed over the old name; owner and group are kept."""
    name = os.path.join(mapdir, "access")
    assert run([type_, name], "a 1\n")[0] == 0
    os.chown(name + suffix, 0, 8)  # group mail on Debian
    with open(name + suffix, "rb") as held:
        old_bytes = held.read()
        before = os.fstat(held.fileno())
        assert run([type_, name], "a 2\nb 3\n")[0] == 0
        held.seek(0)
        assert held.read() == old_bytes
    after = os.stat(name + suffix)
    assert after.st_ino != before.st_ino
    assert (after.st_uid, after.st_gid) == (0, 8)
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert as_pairs(dump(type_, name)) == [("a", "2"), ("b", "3")]
    assert sorted(os.listdir(mapdir)) == ["access" + suffix]


def test_links_need_s(mapdir):
    name = os.path.join(mapdir, "access")
    real = os.path.join(mapdir, "real.db")
    assert run(["hash", os.path.join(mapdir, "real")], "a 1\n")[0] == 0
    os.symlink(real, name + ".db")
    rc, _, err = run(["hash", name], "a 2\n")
    assert rc == 73
    assert "symbolic link" in err and "-s" in err
    assert dump("hash", real) == "a\t1\n"
    # with -s the file the link names is replaced; the link stays
    rc, _, err = run(["-s", "hash", name], "a 2\n")
    assert (rc, err) == (0, "")
    assert os.path.islink(name + ".db")
    assert dump("hash", real) == "a\t2\n"
    os.link(real, os.path.join(mapdir, "hard.db"))
    rc, _, err = run(["hash", os.path.join(mapdir, "hard")], "a 3\n")
    assert rc == 73
    assert "hard link" in err


def test_crlf_input(mapdir):
    name = os.path.join(mapdir, "crlf")
    rc, _, err = run(["cdb", name], "a OK\r\nb REJECT\r\n")
    assert (rc, err) == (0, "")
    assert as_pairs(dump("cdb", name)) == [("a", "OK"), ("b", "REJECT")]
