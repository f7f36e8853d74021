#!/usr/bin/python3
"""jailmail against Postfix on the same machine, same load, same sink.

Run through bench/run, which puts this program in a private network and mount
namespace (so every address below is private to the run, and the bind mounts
into the Postfix chroot vanish with it). Do not run it directly.

For each MTA:
  1. start it, each in its own cpuacct cgroup (its CPU time is read from the
     cgroup; every process it forks is counted);
  2. idle connections: open K connections that have received the greeting,
     and measure the growth of the MTA's total PSS (sum over its processes of
     /proc/PID/smaps_rollup) per connection; then time a new client's greeting
     while they are held;
  3. throughput: Postfix's smtp-source, 20 sessions, 2 KB messages, into the
     MTA, which relays them to one smtp-sink. accepted msgs/s = N / time of
     smtp-source; end-to-end msgs/s = N / time until the sink counted N;
     CPU s per 1000 messages = the cgroup's CPU time over that window.
"""

import argparse
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_ROOT = "/sys/fs/cgroup/cpuacct"

SINK = ("127.0.0.1", 2526)
POSTFIX = ("127.0.0.2", 25)
JAILMAIL = ("127.0.0.3", 25)

SENDER = "sender@bench-client.invalid"
RECIPIENT = "rcpt@bench-sink.invalid"
CLIENT_NAME = "bench-client.invalid"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- cgroups


class CpuGroup:
    """A cpuacct (cgroup v1) group; everything started in it and its
    descendants is accounted there."""

    def __init__(self, name):
        tag = os.environ.get("JMBENCH_TAG", str(os.getpid()))
        self.path = os.path.join(CGROUP_ROOT, f"jmbench-{tag}-{name}")
        os.makedirs(self.path, exist_ok=True)

    def enter(self):
        """For subprocess preexec_fn: move the calling process in."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def cpu_ns(self):
        def read(name):
            with open(os.path.join(self.path, name)) as f:
                return int(f.read())

        return {
            "total": read("cpuacct.usage"),
            "user": read("cpuacct.usage_user"),
            "sys": read("cpuacct.usage_sys"),
        }

    def memory_kib(self):
        """Sum of PSS and of RSS over all processes, in KiB."""
        pss = rss = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                        elif line.startswith("Rss:"):
                            rss += int(line.split()[1])
            except OSError:
                pass  # exited meanwhile
        return {"pss": pss, "rss": rss, "procs": len(self.pids())}

    def kill_all(self, sig=signal.SIGKILL):
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def remove(self):
        self.kill_all()
        try:
            os.rmdir(self.path)
        except OSError:
            pass


# ---------------------------------------------------------------- helpers


def system_busy_ns():
    """CPU time the whole machine spent busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) * 1_000_000_000 // hz


def wait_greeting(addr, timeout):
    """Connects once and waits for a 220 greeting; True when it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(addr, timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def greeting_latency(addr, timeout):
    """Seconds from connect() to a complete 220 greeting line, or None."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(512)
                if not chunk:
                    return None
                buf += chunk
            if buf.startswith(b"220"):
                return time.monotonic() - t0
    except OSError:
        pass
    return None


class IdleClients:
    """Holds many idle SMTP connections, each having read its greeting."""

    def __init__(self, addr):
        self.addr = addr
        self.ready = []  # sockets that have a full greeting

    def grow_to(self, total, timeout, in_flight_max=200):
        """Opens connections until `total` have their greeting or the timeout
        passes (a process limit leaves connections waiting in the backlog).
        Returns how many are held."""
        sel = selectors.DefaultSelector()
        pending = {}
        deadline = time.monotonic() + timeout
        want = total - len(self.ready)
        started = 0
        while len(self.ready) < total and time.monotonic() < deadline:
            while started < want and len(pending) < in_flight_max:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(self.addr)
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    break
                pending[s] = b""
                sel.register(s, selectors.EVENT_READ)
                started += 1
            if not pending:
                break
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    chunk = s.recv(512)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:  # refused or closed: try again with a new one
                    sel.unregister(s)
                    s.close()
                    del pending[s]
                    started -= 1
                    continue
                pending[s] += chunk
                if pending[s].startswith(b"220 ") and pending[s].endswith(b"\n"):
                    sel.unregister(s)
                    del pending[s]
                    self.ready.append(s)
        for s in pending:
            sel.unregister(s)
            s.close()
        sel.close()
        return len(self.ready)

    def close(self):
        for s in self.ready:
            s.close()
        self.ready = []


class Sink:
    """Postfix's smtp-sink from the chroot, counting messages (-c)."""

    def __init__(self, root, out, group):
        self.out_path = os.path.join(out, "sink.out")
        self.root = root
        self.group = group
        self.proc = None

    def start(self):
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            ["chroot", self.root, "smtp-sink", "-c", "-u", "nobody", "-m", "1024",
             f"{SINK[0]}:{SINK[1]}", "1024"],
            stdout=self.out, stderr=subprocess.STDOUT, preexec_fn=self.group.enter)
        if not wait_greeting(SINK, 10):
            raise RuntimeError("smtp-sink did not start (see " + self.out_path + ")")

    def count(self):
        """Messages received so far (the last 'mesg=N' counter)."""
        with open(self.out_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256))
            tail = f.read().decode("ascii", "replace")
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def wait_count(self, target, timeout, stall=30):
        """Waits until the count reaches target, for at most `timeout` s and
        at most `stall` s without progress; returns (reached, time)."""
        now = time.monotonic()
        deadline = now + timeout
        last, last_change = self.count(), now
        while now < deadline and now - last_change < stall:
            n = self.count()
            if n >= target:
                return True, time.monotonic()
            if n != last:
                last, last_change = n, now
            time.sleep(0.005)
            now = time.monotonic()
        return False, time.monotonic()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc:
            self.out.close()


RIG_GROUP = None  # the cgroup of the load generator and the sink


def smtp_source(root, addr, messages, sessions, size, timeout, out_path):
    """Runs smtp-source; returns (ok, seconds, messages the MTA took, tail of
    its output)."""
    cmd = ["chroot", root, "smtp-source", "-c", "-s", str(sessions), "-l", str(size),
           "-m", str(messages), "-M", CLIENT_NAME, "-f", SENDER, "-t", RECIPIENT,
           f"{addr[0]}:{addr[1]}"]
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                             preexec_fn=RIG_GROUP.enter if RIG_GROUP else None)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = -1
        t1 = time.monotonic()
    with open(out_path, "rb") as f:
        text = f.read().decode("ascii", "replace")
    counters = re.findall(r"(\d+)\r", text)
    sent = int(counters[-1]) if counters else 0
    if rc == 0:
        sent = messages
    return rc == 0, t1 - t0, sent, text[-400:]


# ---------------------------------------------------------------- the MTAs


class Postfix:
    name = "postfix"
    addr = POSTFIX

    def __init__(self, root, out):
        self.root = root
        self.out = out
        self.group = None

    def main_cf(self):
        return f"""# written by bench/bench.py: relay everything to the sink, default durable queue
compatibility_level = 3.6
myhostname = bench-postfix.invalid
mydomain = invalid
myorigin = $myhostname
mydestination =
inet_interfaces = {POSTFIX[0]}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [{SINK[0]}]:{SINK[1]}
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is disabled
biff = no
maillog_file = /var/log/postfix.log
smtpd_banner = $myhostname ESMTP
"""

    def start(self):
        with open(os.path.join(self.root, "etc/postfix/main.cf"), "w") as f:
            f.write(self.main_cf())
        log_path = os.path.join(self.root, "var/log/postfix.log")
        if os.path.exists(log_path):
            os.unlink(log_path)
        # An empty queue: delete whatever an earlier, interrupted run left.
        subprocess.run(["chroot", self.root, "postsuper", "-d", "ALL"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["chroot", self.root, "/usr/lib/postfix/configure-instance.sh", "-"],
                       check=True, stdout=subprocess.DEVNULL)
        self.group = CpuGroup(self.name)
        subprocess.run(["chroot", self.root, "postfix", "start"], check=True,
                       preexec_fn=self.group.enter)
        if not wait_greeting(self.addr, 20):
            raise RuntimeError("Postfix does not answer; see " + log_path)

    def limits_note(self):
        out = subprocess.run(["chroot", self.root, "postconf", "-h", "default_process_limit"],
                             capture_output=True, text=True).stdout.strip()
        return int(out or 100)

    def stop(self):
        if self.group is None:
            return
        subprocess.run(["chroot", self.root, "postfix", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 10
        while self.group.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.group.remove()
        self.group = None
        src = os.path.join(self.root, "var/log/postfix.log")
        if os.path.exists(src):
            shutil.copy(src, os.path.join(self.out, "postfix.log"))


class Jailmail:
    name = "jailmail"
    addr = JAILMAIL

    def __init__(self, binary, out, max_deliveries):
        self.binary = binary
        self.out = out
        self.max_deliveries = max_deliveries
        self.group = None
        self.proc = None
        self.jail = os.path.join(out, "jailmail-jail")
        self.conf = os.path.join(out, "jailmail.conf")
        self.log = os.path.join(out, "jailmail.log")

    def conf_text(self):
        return f"""# written by bench/bench.py: relay everything to the sink
listen = {JAILMAIL[0]}:{JAILMAIL[1]}
hostname = bench-jailmail.invalid
jail_directory = {self.jail}
queue_directory = /queue
run_as_user = jailmail
run_as_group = mail
smarthost = [{SINK[0]}]:{SINK[1]}
log_file = {self.log}
max_connections = 6000
max_connections_per_client = 6000
max_deliveries = {self.max_deliveries}
"""

    def start(self):
        shutil.rmtree(self.jail, ignore_errors=True)
        os.makedirs(self.jail)
        with open(self.conf, "w") as f:
            f.write(self.conf_text())
        if os.path.exists(self.log):
            os.unlink(self.log)
        self.group = CpuGroup(self.name)
        self.stderr = open(os.path.join(self.out, "jailmail.stderr"), "wb")
        self.proc = subprocess.Popen([self.binary, "-bD", "-C", self.conf],
                                     stdout=self.stderr, stderr=subprocess.STDOUT,
                                     preexec_fn=self.group.enter)
        if not wait_greeting(self.addr, 20):
            raise RuntimeError("jailmail does not answer; see " + self.log)

    def stop(self):
        if self.group is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.group.remove()
        self.proc.poll()
        self.stderr.close()
        self.group = None


# ---------------------------------------------------------------- phases


def idle_phase(mta, steps, latency_samples, limit_note):
    """Memory per idle connection at each step, and greeting latency at the
    last step. Returns a dict of figures."""
    res = {"steps": []}
    time.sleep(1.0)
    base = mta.group.memory_kib()
    res["base"] = base
    idle = IdleClients(mta.addr)
    try:
        for k in steps:
            held = idle.grow_to(k, timeout=30 if k > 1000 else 15)
            time.sleep(1.0)  # let the processes settle
            mem = mta.group.memory_kib()
            step = {
                "wanted": k, "held": held, "pss_kib": mem["pss"], "rss_kib": mem["rss"],
                "procs": mem["procs"],
                "pss_per_conn_kib": (mem["pss"] - base["pss"]) / held if held else None,
                "rss_per_conn_kib": (mem["rss"] - base["rss"]) / held if held else None,
            }
            res["steps"].append(step)
            log(f"{mta.name}: {held}/{k} idle connections hold; PSS {mem['pss']} KiB "
                f"(+{mem['pss'] - base['pss']}), {mem['procs']} processes")
            if held < k:
                break
        lat = []
        for _ in range(latency_samples):
            lat.append(greeting_latency(mta.addr, 3.0))
            if lat[-1] is None and len(lat) >= 3:
                break  # blocked: three tries of 3 s say enough
        got = [x for x in lat if x is not None]
        res["held_during_latency"] = len(idle.ready)
        res["latency_ms"] = {
            "samples": len(lat), "greeted": len(got),
            "median": statistics.median(got) * 1000 if got else None,
            "max": max(got) * 1000 if got else None,
        }
        log(f"{mta.name}: new client's greeting with {len(idle.ready)} idle held: "
            + (f"median {res['latency_ms']['median']:.2f} ms, max {res['latency_ms']['max']:.2f} ms, "
               f"{len(got)}/{len(lat)} greeted within 3 s" if got else
               f"none of {len(lat)} greeted within 3 s" + limit_note))
    finally:
        idle.close()
    time.sleep(1.5)  # let the MTA notice the closed connections
    return res


def throughput_phase(mta, sink, root, out, args):
    res = {}
    # Warm-up, not measured: processes forked, caches and queue warm.
    if args.warmup:
        before = sink.count()
        ok, secs, sent, tail = smtp_source(root, mta.addr, args.warmup, args.sessions,
                                           args.size, 120, os.path.join(out, f"{mta.name}-warmup.out"))
        if not ok:
            raise RuntimeError(f"{mta.name}: warm-up smtp-source failed: {tail}")
        reached, _ = sink.wait_count(before + args.warmup, 120)
        if not reached:
            raise RuntimeError(f"{mta.name}: warm-up messages did not all reach the sink")
    time.sleep(1.0)

    before = sink.count()
    perf = None
    if args.perf:
        perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o",
                                 os.path.join(out, f"perf-{mta.name}.data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    cpu0 = mta.group.cpu_ns()
    rig0 = RIG_GROUP.cpu_ns()["total"]
    sys0 = system_busy_ns()
    t0 = time.monotonic()
    ok, secs, sent, tail = smtp_source(root, mta.addr, args.messages, args.sessions, args.size,
                                       args.timeout, os.path.join(out, f"{mta.name}-source.out"))
    res["source_ok"] = ok
    res["accepted"] = sent
    res["accept_seconds"] = secs
    res["accepted_per_s"] = sent / secs if secs > 0 else None
    log(f"{mta.name}: smtp-source {'done' if ok else 'FAILED/TIMED OUT'}: {sent} messages "
        f"in {secs:.2f} s")
    if not ok:
        log(f"{mta.name}: smtp-source said: {tail.strip()[-300:]!r}")
    reached, t2 = sink.wait_count(before + sent, args.timeout)
    cpu1 = mta.group.cpu_ns()
    rig1 = RIG_GROUP.cpu_ns()["total"]
    sys1 = system_busy_ns()
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
        perf_report(mta.name, out)
    delivered = sink.count() - before
    e2e = t2 - t0
    res["delivered"] = delivered
    res["e2e_complete"] = reached
    res["e2e_seconds"] = e2e
    # An incomplete run has no end-to-end rate: it would flatter nobody.
    res["e2e_per_s"] = delivered / e2e if reached and e2e > 0 else None
    n = max(sent, 1)
    res["cpu_s_per_1000"] = (cpu1["total"] - cpu0["total"]) / 1e9 / n * 1000
    res["cpu_user_s_per_1000"] = (cpu1["user"] - cpu0["user"]) / 1e9 / n * 1000
    res["cpu_sys_s_per_1000"] = (cpu1["sys"] - cpu0["sys"]) / 1e9 / n * 1000
    res["cpu_rig_s"] = (rig1 - rig0) / 1e9
    res["cpu_mta_s"] = (cpu1["total"] - cpu0["total"]) / 1e9
    # Whatever else ran on the machine meanwhile (other people's builds) is
    # noise in these figures: say how much there was.
    res["cpu_other_s"] = max(0.0, (sys1 - sys0) / 1e9 - res["cpu_mta_s"] - res["cpu_rig_s"])
    res["cpu_window_s"] = e2e * (os.cpu_count() or 1)
    log(f"{mta.name}: sink has {delivered} after {e2e:.2f} s"
        + ("" if reached else " (INCOMPLETE: timed out)"))
    time.sleep(1.0)
    res["sink_after_1s"] = sink.count() - before
    return res


def perf_report(name, out):
    """Where the CPU went during the measured run, by program and by symbol."""
    data = os.path.join(out, f"perf-{name}.data")
    with open(os.path.join(out, f"perf-{name}.txt"), "w") as f:
        for sort in ("comm", "comm,dso", "comm,sym"):
            f.write(f"==== perf report --sort {sort}\n")
            f.flush()
            subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
                           stdout=f, stderr=subprocess.DEVNULL, timeout=300)


def sink_direct(sink, root, out, args):
    """smtp-source straight into smtp-sink: what the load generator and the
    sink manage with no MTA between them (the ceiling of this rig)."""
    before = sink.count()
    ok, secs, sent, tail = smtp_source(root, SINK, args.messages, args.sessions, args.size, 120,
                                       os.path.join(out, "direct-source.out"))
    sink.wait_count(before + sent, 10)
    return {"ok": ok, "per_s": sent / secs if secs else None, "seconds": secs}


# ---------------------------------------------------------------- report


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def report(results, args, machine):
    lines = []
    pf = results.get("postfix", {})
    jm = results.get("jailmail", {})

    def get(r, *path):
        for p in path:
            if r is None:
                return None
            if isinstance(p, int):
                r = r[p] if isinstance(r, list) and len(r) > p else None
            else:
                r = r.get(p) if isinstance(r, dict) else None
        return r

    def mem_last(r):
        steps = get(r, "idle", "steps") or []
        return steps[-1] if steps else {}

    rows = [
        ("accepted msgs/s", get(pf, "tp", "accepted_per_s"), get(jm, "tp", "accepted_per_s"), 0, True),
        ("end-to-end msgs/s", get(pf, "tp", "e2e_per_s"), get(jm, "tp", "e2e_per_s"), 0, True),
        ("CPU s per 1,000 msgs", get(pf, "tp", "cpu_s_per_1000"), get(jm, "tp", "cpu_s_per_1000"), 3, False),
        ("  of which user", get(pf, "tp", "cpu_user_s_per_1000"), get(jm, "tp", "cpu_user_s_per_1000"), 3, False),
        ("  of which system", get(pf, "tp", "cpu_sys_s_per_1000"), get(jm, "tp", "cpu_sys_s_per_1000"), 3, False),
        ("KiB PSS per idle conn", mem_last(pf).get("pss_per_conn_kib"), mem_last(jm).get("pss_per_conn_kib"), 1, False),
        ("KiB RSS per idle conn", mem_last(pf).get("rss_per_conn_kib"), mem_last(jm).get("rss_per_conn_kib"), 1, False),
    ]
    lines.append(f"jailmail vs Postfix: smtp-source -s {args.sessions} -l {args.size} -m {args.messages}"
                 f" (after {args.warmup} warm-up), relay to smtp-sink; best of {args.rounds} "
                 f"alternating rounds")
    lines.append(f"machine: {machine}")
    lines.append("")
    lines.append(f"{'':26}{'Postfix':>14}{'jailmail':>14}{'jailmail/Postfix':>18}")
    for label, a, b, d, _ in rows:
        lines.append(f"{label:26}{fmt(a, d):>14}{fmt(b, d):>14}{ratio(b, a):>18}")
    lines.append("")
    if "direct" in results:
        lines.append(f"rig ceiling (smtp-source straight into smtp-sink): "
                     f"{fmt(results['direct']['per_s'])} msgs/s")
    for name, r in (("Postfix", pf), ("jailmail", jm)):
        for tp in r.get("rounds", []):
            lines.append(f"{name} round {tp['round']}"
                         + (" (in the table)" if tp is r.get("tp") and len(r["rounds"]) > 1 else "")
                         + ":")
            lines.append(f"  accepted {tp['accepted']} in {tp['accept_seconds']:.2f} s "
                         f"({fmt(tp['accepted_per_s'])}/s), "
                         f"sink got {tp['delivered']} in {tp['e2e_seconds']:.2f} s "
                         f"({fmt(tp['e2e_per_s'])}/s), {tp['cpu_s_per_1000']:.3f} CPU s/1000"
                         + ("" if tp["e2e_complete"] and tp["source_ok"] else "  ** INCOMPLETE **"))
            if tp["sink_after_1s"] != tp["accepted"]:
                lines.append(f"  ** the sink counted {tp['sink_after_1s']} messages for "
                             f"{tp['accepted']} accepted (a second after the end) **")
            lines.append(f"  CPU in that window: MTA {tp['cpu_mta_s']:.1f} s, "
                         f"smtp-source+smtp-sink {tp['cpu_rig_s']:.1f} s, other processes on the "
                         f"machine {tp['cpu_other_s']:.1f} s (of {tp['cpu_window_s']:.1f} CPU-s)")
        idle = r.get("idle")
        if idle:
            steps = ", ".join(
                f"{s['held']} held: +{(s['pss_kib'] - idle['base']['pss'])} KiB PSS "
                f"({fmt(s['pss_per_conn_kib'], 1)}/conn), {s['procs']} processes"
                for s in idle["steps"])
            lines.append(f"{name} idle: base {idle['base']['pss']} KiB PSS in "
                         f"{idle['base']['procs']} processes; {steps}")
            lat = idle["latency_ms"]
            if lat["greeted"]:
                lines.append(f"{name}: new client's greeting with {idle['held_during_latency']} idle "
                             f"connections held: median {lat['median']:.2f} ms, max {lat['max']:.2f} ms "
                             f"({lat['greeted']}/{lat['samples']} within 3 s)")
            else:
                lines.append(f"{name}: new client's greeting with {idle['held_during_latency']} idle "
                             f"connections held: none within 3 s ({lat['samples']} tries)"
                             + r.get("limit_note", ""))
        if r.get("error"):
            lines.append(f"{name}: ERROR: {r['error']}")
    return "\n".join(lines)


def machine_description():
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
        except OSError:
            return "?"

    cpu = first("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = first("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    disk = first(f"df -h --output=source,fstype {HERE} | tail -1")
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem}, Linux {os.uname().release}, "
            f"disk {disk.split()[0] if disk else '?'} ({disk.split()[1] if disk else '?'})")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the Postfix chroot")
    ap.add_argument("--binary", required=True, help="jailmail's sendmail")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["postfix", "jailmail"])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--idle", type=int, default=5000, help="idle connections for jailmail")
    ap.add_argument("--max-deliveries", type=int, default=20,
                    help="jailmail's outbound connections (Postfix's default destination "
                         "concurrency is 20)")
    ap.add_argument("--timeout", type=int, default=150, help="per smtp-source run and per drain")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating throughput rounds; the table shows each MTA's best")
    ap.add_argument("--budget", type=int, default=360,
                    help="seconds of throughput runs after which no new round starts")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--perf", action="store_true",
                    help="perf record -a during each measured run: out/perf-MTA.txt")
    args = ap.parse_args()

    if os.environ.get("JMBENCH_NS") != "1":
        sys.exit("bench.py: run me through bench/run (private network namespace)")
    if args.perf and not shutil.which("perf"):
        sys.exit("bench.py: --perf needs perf (apt-get install linux-perf)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Postfix binds only to addresses that an interface has (127.0.0.1/8 on
    # lo is not enough for it): give each MTA its own.
    for a in (POSTFIX[0], JAILMAIL[0]):
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], check=True)
    for m in ("proc", "dev"):
        subprocess.run(["mount", "--bind", f"/{m}", os.path.join(args.root, m)], check=True)
    os.makedirs(args.out, exist_ok=True)

    machine = machine_description()
    results = {"args": vars(args), "machine": machine}
    global RIG_GROUP
    RIG_GROUP = CpuGroup("rig")
    sink = Sink(args.root, args.out, RIG_GROUP)
    mtas = []
    try:
        sink.start()
        log("sink up; rig ceiling: smtp-source straight into smtp-sink")
        results["direct"] = sink_direct(sink, args.root, args.out, args)
        log(f"rig ceiling: {results['direct']['per_s']:.0f} msgs/s")

        order = [Postfix(args.root, args.out),
                 Jailmail(args.binary, args.out, args.max_deliveries)]
        # Both MTAs run side by side (an idle one costs the other nothing);
        # their throughput runs alternate, round after round, so that noise
        # from the rest of the machine falls on both alike.
        for mta in order:
            if args.only and mta.name != args.only:
                continue
            r = results.setdefault(mta.name, {"rounds": []})
            try:
                log(f"{mta.name}: starting")
                mtas.append(mta)
                mta.start()
                if not args.skip_idle:
                    if mta.name == "postfix":
                        limit = mta.limits_note()
                        note = (f" (Postfix runs one smtpd process per connection, at most "
                                f"default_process_limit = {limit}; later clients wait in the "
                                f"listen backlog)")
                        r["limit_note"] = note
                        steps = [int(limit * 0.9), limit]
                    else:
                        steps = [1000, args.idle] if args.idle > 1000 else [args.idle]
                    r["idle"] = idle_phase(mta, steps, 20, r.get("limit_note", ""))
            except Exception as e:
                r["error"] = str(e)
                log(f"{mta.name}: ERROR: {e}")
        started = time.monotonic()
        for rnd in range(1, args.rounds + 1):
            if rnd > 1 and time.monotonic() - started > args.budget:
                log(f"round {rnd} skipped: {args.budget} s of throughput runs are spent")
                break
            for mta in mtas:
                r = results[mta.name]
                if "error" in r:
                    continue
                log(f"{mta.name}: round {rnd} of {args.rounds}")
                try:
                    tp = throughput_phase(mta, sink, args.root, args.out, args)
                    tp["round"] = rnd
                    r["rounds"].append(tp)
                except Exception as e:
                    r["error"] = str(e)
                    log(f"{mta.name}: ERROR: {e}")
        for mta in mtas:
            r = results[mta.name]
            done = [t for t in r["rounds"] if t["source_ok"] and t["e2e_complete"]]
            if done:  # noise only ever slows a run down: the best round counts
                r["tp"] = max(done, key=lambda t: t["e2e_per_s"])
            elif r["rounds"]:
                r["tp"] = r["rounds"][-1]
    finally:
        for mta in mtas:
            try:
                mta.stop()
            except Exception:
                pass
        sink.stop()
        RIG_GROUP.remove()

    text = report(results, args, machine)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "results.txt"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    return 0 if all("error" not in results.get(m.name, {}) for m in mtas) else 1


if __name__ == "__main__":
    sys.exit(main())
