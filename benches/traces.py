#!/usr/bin/env python3
"""Record real access traces for the eviction policies: repeated builds with real edits.

usage: python3 benches/traces.py [--larder target/release/larder] [--projects lua,zstd,redis]
                                 [--edits 15] [--seed 1] [--out benches/traces/builds.trace]

Each project (the Debian source packages of benches/builds.py) gets a history: its pristine
upstream tree, then Debian's patch series applied one patch at a time (real edits a maintainer
made), then --edits developer edits drawn with a fixed seed (a comment appended to a C file, or
now and then to a header, which every file that includes it sees). The projects' histories are
built interleaved, as CI would build them, into one shared local cache: every build is a clean
`make -j2` of one state, and one build in five is an older state again (a release branch, a pull
request based on an older main). Every compile goes through `larder exec` with its exact inputs
(the source and the project headers `gcc -MM` names), so an edit misses exactly what it changes;
larder records each lookup and store, with the compile's time as its cost, into the trace
(`LARDER_TRACE`).

Then: `larder policy simulate --trace FILE --capacity 2.5% ... --policy lru --policy belady ...`.
"""
import argparse, glob, os, random, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import builds  # noqa: E402  (the same sources and build commands)

WRAPPER = r'''#!/usr/bin/env python3
# larder exec per compile with the compile's exact inputs: the source and the project headers
# `gcc -MM` lists (system headers belong to the toolchain). Anything else runs as it is.
import os, subprocess, sys
args = sys.argv[1:]
srcs = [a for a in args if a.endswith(".c")]
if "-c" not in args or "-o" not in args or len(srcs) != 1:
    os.execvp("gcc", ["gcc"] + args)
out = args[args.index("-o") + 1]
# The compile's own dependency flags (-MMD -MF x.d ...) would send the list elsewhere.
valued = {"-o", "-MF", "-MT", "-MQ"}
dep_args = [a for i, a in enumerate(args)
            if a not in valued and a not in ("-c", "-MD", "-MMD", "-MP")
            and not (i > 0 and args[i - 1] in valued)]
r = subprocess.run(["gcc", "-MM", "-MT", "_", "-MF", "/dev/stdout"] + dep_args,
                   capture_output=True, text=True)
if r.returncode != 0 or ":" not in r.stdout:
    sys.exit("larder-cc: gcc -MM %s failed: %s" % (" ".join(dep_args), r.stderr.strip()))
deps = r.stdout.replace("\\\n", " ").split(":", 1)[1].split()
root, here = os.environ["BUILD_ROOT"], os.getcwd()
rel = lambda p: os.path.relpath(os.path.join(here, p), root)
cmd = [os.environ["LARDER"], "exec", "-q"]
for d in deps:
    cmd += ["--in", rel(d)]
cmd += ["--out", rel(out), "--", "env", "-C", here, "gcc"] + args
os.chdir(root)
os.execv(cmd[0], cmd)
'''


def debian_patches(project, work):
    """The Debian patch series of `project`'s source package, as file paths, in order."""
    srcdir = os.path.join(work, "src", project)
    deb = os.path.join(srcdir, "debian-tree")
    if not os.path.isdir(deb):
        tarballs = glob.glob(os.path.join(srcdir, "*.debian.tar.*"))
        if not tarballs:
            return []
        os.makedirs(deb)
        subprocess.run(["tar", "xf", tarballs[0], "-C", deb], check=True)
    series = os.path.join(deb, "debian", "patches", "series")
    if not os.path.exists(series):
        return []
    out = []
    for line in open(series):
        name = line.split("#", 1)[0].strip().split(" ")[0]
        if not name:
            continue
        path = os.path.join(deb, "debian", "patches", name)
        # Only patches to the sources: Debian's build-system patches (libtool, install paths)
        # change how the package builds, not what a developer edits.
        touched = [l.split()[1] for l in open(path, errors="replace")
                   if l.startswith("+++ ") and len(l.split()) > 1]
        if touched and all(t.endswith((".c", ".h")) for t in touched):
            out.append(path)
    return out


def builds_ok(project, src, root, ops, env):
    """Whether the tree with `ops` applied builds (through ccache, so checking is quick)."""
    materialise(src, root, ops)
    make_args, outputs = builds.PROJECTS[project][2], builds.PROJECTS[project][3]
    r = subprocess.run(["make", "-j2"] + make_args + ["CC=ccache gcc"], cwd=root, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0 and all(os.path.exists(os.path.join(root, o)) for o in outputs)


def history(project, src, work, edits, rng, tmp):
    """The edits that make each state: state n is the pristine tree with edits[:n] applied.

    Debian's patches are kept when the tree still builds with them here (some need files
    Debian's build generates)."""
    env = dict(os.environ, CCACHE_DIR=os.path.join(tmp, "check-ccache"))
    root = os.path.join(tmp, "check", project)
    ops = []
    for patch in debian_patches(project, work):
        if builds_ok(project, src, root, ops + [("patch", patch)], env):
            ops.append(("patch", patch))
        else:
            builds.log("traces: %s: %s does not build here, left out" % (
                project, os.path.basename(patch)))
    cfiles, hfiles = [], []
    for dirpath, _, files in os.walk(src):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            if "test" in rel.lower() or "/examples/" in "/" + rel:
                continue
            if f.endswith(".c"):
                cfiles.append(rel)
            elif f.endswith(".h"):
                hfiles.append(rel)
    cfiles.sort()
    hfiles.sort()
    for i in range(edits):
        pool = hfiles if hfiles and rng.random() < 0.2 else cfiles
        ops.append(("append", rng.choice(pool), "\n/* larder trace: edit %d */\n" % i))
    return ops


def materialise(src, build_root, ops):
    builds.fresh_tree(src, build_root)
    for op in ops:
        if op[0] == "patch":
            # A patch that does not apply to this upstream tree is skipped, as a maintainer
            # would have refreshed it: the state is then the same as the one before.
            subprocess.run(["patch", "-p1", "-s", "-N", "-i", op[1]], cwd=build_root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(os.path.join(build_root, op[1]), "a") as f:
                f.write(op[2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--larder", default=os.path.join(builds.ROOT, "target/release/larder"))
    ap.add_argument("--projects", default="lua,zstd,redis")
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(builds.ROOT, "benches/traces/builds.trace"))
    ap.add_argument("--work", default=os.path.join(builds.ROOT, "target/bench/builds"))
    args = ap.parse_args()
    larder = os.path.abspath(args.larder)
    if not os.path.exists(larder):
        sys.exit("traces: no larder binary at %s (cargo build --release -p larder-cli)" % larder)
    rng = random.Random(args.seed)
    projects = args.projects.split(",")
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if os.path.exists(args.out):
        os.remove(args.out)
    tmp = tempfile.mkdtemp(prefix="traces-", dir=args.work)
    try:
        wrapper = os.path.join(tmp, "larder-cc")
        with open(wrapper, "w") as f:
            f.write(WRAPPER)
        os.chmod(wrapper, 0o755)
        srcs, ops = {}, {}
        for p in projects:
            srcs[p] = builds.fetch(p, args.work)
            ops[p] = history(p, srcs[p], args.work, args.edits, rng, tmp)
            builds.log("traces: %s: %d states (%d Debian patches)" % (
                p, len(ops[p]) + 1, sum(1 for o in ops[p] if o[0] == "patch")))
        # The schedule: round-robin over the projects' histories, state by state, and one
        # build in five of an older state.
        schedule = []
        longest = max(len(o) for o in ops.values()) + 1
        for n in range(longest):
            for p in projects:
                if n <= len(ops[p]):
                    schedule.append((p, n))
                    if n > 1 and rng.random() < 0.2:
                        schedule.append((p, rng.randrange(0, n)))
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("CCACHE_", "LARDER_")):
                del env[k]
        config = os.path.join(tmp, "larder.toml")
        with open(config, "w") as f:
            f.write("# the trace run sets everything through the environment\n")
        env.update(LARDER=larder, LARDER_STORE=os.path.join(tmp, "cache"),
                   LARDER_TRACE=os.path.abspath(args.out), LARDER_CONFIG=config)
        for i, (p, n) in enumerate(schedule):
            _, _, make_args, _ = builds.PROJECTS[p]
            root = os.path.join(tmp, "build", p)
            materialise(srcs[p], root, ops[p][:n])
            env["BUILD_ROOT"] = root
            r = subprocess.run(["make", "-j2"] + make_args + ["CC=%s" % wrapper], cwd=root,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
            if r.returncode != 0:
                sys.exit("traces: %s state %d failed:\n%s" % (p, n, r.stderr[-3000:]))
            for o in builds.PROJECTS[p][3]:
                if not os.path.exists(os.path.join(root, o)):
                    sys.exit("traces: %s state %d did not build %s:\n%s" % (
                        p, n, o, r.stderr[-3000:]))
            lines = sum(1 for _ in open(args.out)) if os.path.exists(args.out) else 0
            builds.log("traces: build %d/%d: %s state %d (%d trace lines)" % (
                i + 1, len(schedule), p, n, lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(args.out)


if __name__ == "__main__":
    main()
