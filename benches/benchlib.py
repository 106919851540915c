"""What the Python benchmark scripts share: loopback ports, waiting for a server, the result
schema BENCHMARKS.md is rendered from, and a journaled scratch file system."""
import json, os, shutil, socket, subprocess, sys, time


def free_port():
    """A loopback port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30, proc=None, log=None):
    """Wait until something accepts connections on loopback `port`; exit the script if not.
    With `proc` (the server's Popen), stop waiting as soon as it exits, and say how, with the
    end of its `log` file when given."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log and os.path.exists(log):
                with open(log, errors="replace") as f:
                    tail = ": " + " | ".join(f.read().strip().splitlines()[-5:])
            sys.exit("server for port %d exited with status %s before listening%s"
                     % (port, proc.returncode, tail))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("server on port %d did not start within %d s" % (port, timeout))


# ------------------------------------------------------------------------------------------
# Results in the one schema `cargo xtask bench` renders into BENCHMARKS.md
# (xtask/src/bench_report.rs): `<out>/<area>.result.json`.

# A shell benchmark that hands its rows to `main` below sets BENCH_T0 (seconds since the epoch)
# and BENCH_LOAD0 (/proc/loadavg's first three fields) when it starts.
LOAD_START = ([float(x) for x in os.environ["BENCH_LOAD0"].split()[:3]]
              if os.environ.get("BENCH_LOAD0") else os.getloadavg())
STARTED = float(os.environ.get("BENCH_T0") or time.time())


def ratio_row(what, larder, baseline, ratio, target="", met=None, ratio_text=None, headline=False):
    """One table row: what, larder's figure, the baseline's, the ratio (a number or None), the
    target as text (`≥ 0.9×`, `≤ 1.1× the time`), met (True, False, or None without a target)."""
    row = {"what": what, "larder": larder, "baseline": baseline, "ratio": ratio,
           "target": target, "met": met}
    if ratio_text is not None:
        row["ratio_text"] = ratio_text
    if headline:
        row["headline"] = True
    return row


def write_result(out, area, rows, settings="", charts=(), command=None):
    """Write `<out>/<area>.result.json`: the rows plus the run's command, UTC date, git revision,
    load averages at start (this module's import) and end, and duration."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                         text=True).stdout.strip()
    result = {
        "area": area,
        "command": command or "python3 " + " ".join(
            [os.path.relpath(sys.argv[0], root)] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(STARTED)),
        "revision": rev,
        "load_start": list(LOAD_START),
        "load_end": list(os.getloadavg()),
        "duration_s": round(time.time() - STARTED, 1),
        "settings": settings,
        "rows": rows,
        "charts": [{"file": f, "caption": c} for f, c in charts],
    }
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, area + ".result.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    return path


def main():
    """`python3 benches/benchlib.py result OUT AREA [SETTINGS] < rows.json`: for the shell
    benchmarks, which compute their rows with a short Python snippet."""
    if len(sys.argv) < 4 or sys.argv[1] != "result":
        sys.exit("usage: benchlib.py result OUT AREA [SETTINGS] < rows.json")
    data = json.load(sys.stdin)
    rows = data["rows"] if isinstance(data, dict) else data
    command = data.get("command") if isinstance(data, dict) else None
    print("wrote " + write_result(sys.argv[2], sys.argv[3], rows,
                                  sys.argv[4] if len(sys.argv) > 4 else "", command=command))


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------------------------------
# A scratch file system for benchmarks that create and delete many files.
#
# On ext4 *without a journal* (this project's VMs' root file system) every file created in the
# minutes after tens of thousands were deleted costs ~500 µs of kernel time (ext4's
# `recently_deleted` inode scan), so a put-heavy phase run after another phase's clean-up is
# measured 2-3× slower than the same phase on a fresh disk. ext4 with a journal, the default of
# `mkfs.ext4` and what users' machines and CI runners have, has no such scan.

class JournaledScratch:
    """`with JournaledScratch(parent) as path:` a directory on a journaled ext4 file system:
    a sparse image in `parent`, loop-mounted (with `discard`, so deleted files give their
    space back) while the block runs, then unmounted and removed. Needs root, `mkfs.ext4` and
    loop devices; without them the directory is a plain one in `parent` and a warning says the
    figures of file-creating phases will be noisy."""

    def __init__(self, parent, size_gib=16, name="scratch"):
        self.parent, self.size, self.name = parent, size_gib, name
        self.img = os.path.join(parent, name + ".img")
        self.path = os.path.join(parent, name)
        self.mounted = False

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["umount", self.path], capture_output=True)
        why = None
        if os.geteuid() != 0:
            why = "not root"
        else:
            try:
                with open(self.img, "wb") as f:
                    f.truncate(self.size << 30)
                subprocess.run(["mkfs.ext4", "-q", "-F", self.img], check=True,
                               capture_output=True)
                subprocess.run(["mount", "-o", "loop,discard", self.img, self.path], check=True,
                               capture_output=True)
                self.mounted = True
            except (OSError, subprocess.CalledProcessError) as e:
                why = getattr(e, "stderr", b"") or str(e)
                why = why.decode(errors="replace").strip() if isinstance(why, bytes) else why
        if why:
            print("warning: no journaled scratch file system (%s); file-creating phases run in %s "
                  "and may be slowed by ext4's recently-deleted inode scan" % (why, self.path),
                  file=sys.stderr, flush=True)
            if os.path.exists(self.img):
                os.unlink(self.img)
        return self.path

    def __exit__(self, *exc):
        if self.mounted:
            if subprocess.run(["umount", self.path], capture_output=True).returncode != 0:
                # Still busy (a process left behind): detach it once free, so the loop device
                # and the image's space are not held until a reboot.
                print("warning: %s is busy; unmounting it lazily" % self.path, file=sys.stderr)
                subprocess.run(["umount", "-l", self.path], capture_output=True)
            os.unlink(self.img)
        shutil.rmtree(self.path, ignore_errors=True)
        return False
