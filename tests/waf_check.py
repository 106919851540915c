#!/usr/bin/env python3
"""Build a tiny C project with the real waf and integrations/waf/larder_cache.py, and check it.

    waf_check.py LARDER WAF

LARDER is the larder binary, WAF the waf script (pip package `waf-build`). Run by
tests/e2e_waf.rs. Every failed check raises; exit status 0 only when all pass.

Checks:
- first build: every task is a miss and is stored; `waf clean build`: every task is a hit, and the
  program still runs;
- the same project in another directory (another checkout) hits too: signatures do not depend on
  the checkout path;
- WAFCACHE_ASYNC_WORKERS: stores are uploaded in the background and the build waits for them, so
  the next clean build hits;
- WAFCACHE_NO_PUSH: nothing stored;
- larder missing (LARDER_BIN pointing nowhere): the build succeeds without the cache, with a warning.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLDIR = os.path.join(os.path.dirname(HERE), "integrations", "waf")

WSCRIPT = """
top = '.'
out = 'build'
def options(opt):
    opt.load('compiler_c')
def configure(conf):
    conf.load('compiler_c')
def build(bld):
    bld.load('larder_cache', tooldir=%r)
    bld.stlib(source='lib.c', target='greet', includes='.')
    bld.program(source='main.c', target='app', includes='.', use='greet')
""" % TOOLDIR

SOURCES = {
    "greet.h": "const char *greeting(void);\n",
    "lib.c": '#include "greet.h"\nconst char *greeting(void) { return "hello from larder"; }\n',
    "main.c": '#include <stdio.h>\n#include "greet.h"\nint main(void) { puts(greeting()); return 0; }\n',
}
# lib.c, main.c, the static library and the program.
TASKS = 4

STATS = re.compile(r"larder_cache stats: (\d+) requests, (\d+) hits \(ratio: [\d.]+%\), (\d+) writes")


def check(cond, what, detail=""):
    if not cond:
        raise AssertionError("%s%s" % (what, ("\n%s" % (detail,)) if detail else ""))
    print("  ok: %s" % what)


def project(root):
    os.makedirs(root)
    with open(os.path.join(root, "wscript"), "w") as f:
        f.write(WSCRIPT)
    for name, text in SOURCES.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    return root


class Waf:
    def __init__(self, waf, larder, tmp):
        self.waf, self.larder, self.tmp = waf, larder, tmp

    def env(self, cache, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LARDER_", "WAFCACHE"))}
        env["WAFCACHE"] = cache
        env["WAFCACHE_STATS"] = "1"
        env["LARDER_BIN"] = self.larder
        env["XDG_CACHE_HOME"] = os.path.join(self.tmp, "xdg-cache")
        env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, "xdg-config")
        # waf imports the tool from integrations/waf: leave no __pycache__ in the checkout.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env

    def run(self, root, args, env):
        out = subprocess.run([self.waf] + args, cwd=root, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        text = out.stdout.decode(errors="replace")
        check(out.returncode == 0, "waf %s in %s exits 0" % (" ".join(args), os.path.basename(root)), text)
        return text

    def build(self, root, env, clean=False):
        """Build and return (requests, hits, writes) and the output."""
        text = self.run(root, ["clean", "build"] if clean else ["build"], env)
        found = STATS.findall(text)
        check(len(found) == 1, "one stats line", text)
        return tuple(int(x) for x in found[0]), text


def run_app(root):
    out = subprocess.run([os.path.join(root, "build", "app")], stdout=subprocess.PIPE, timeout=60)
    return out.stdout.decode()


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    larder, waf_script = argv[1], argv[2]
    tmp = tempfile.mkdtemp(prefix="larder-waf-")
    try:
        w = Waf(waf_script, larder, tmp)
        cache = os.path.join(tmp, "cache")
        env = w.env(cache)

        print("waf_check: a build, then a clean build")
        a = project(os.path.join(tmp, "checkout-a"))
        w.run(a, ["configure"], env)
        (reqs, hits, writes), _ = w.build(a, env)
        check((reqs, hits, writes) == (TASKS, 0, TASKS), "first build: %d misses, %d stored" % (TASKS, TASKS), (reqs, hits, writes))
        check(os.path.isdir(os.path.join(cache, "entries")), "larder's store holds the entries")
        (reqs, hits, writes), _ = w.build(a, env, clean=True)
        check((reqs, hits, writes) == (TASKS, TASKS, 0), "clean build: every task a hit", (reqs, hits, writes))
        check(run_app(a) == "hello from larder\n", "the restored program runs")

        print("waf_check: another checkout of the same project")
        b = project(os.path.join(tmp, "elsewhere", "checkout-b"))
        w.run(b, ["configure"], env)
        (reqs, hits, writes), _ = w.build(b, env)
        check((reqs, hits) == (TASKS, TASKS), "another checkout path hits", (reqs, hits, writes))
        check(run_app(b) == "hello from larder\n", "its program runs")

        print("waf_check: WAFCACHE_ASYNC_WORKERS")
        cache2 = os.path.join(tmp, "cache-async")
        env2 = w.env(cache2, WAFCACHE_ASYNC_WORKERS="2")
        (reqs, hits, writes), text = w.build(a, env2, clean=True)
        check((reqs, hits, writes) == (TASKS, 0, TASKS), "async: stores answered ok", (reqs, hits, writes))
        check("waiting for larder uploads" in text, "async: the build waits for the uploads", text)
        (reqs, hits, writes), _ = w.build(a, env2, clean=True)
        check(hits == TASKS, "async: every upload landed before the build ended", (reqs, hits, writes))

        print("waf_check: WAFCACHE_NO_PUSH")
        cache3 = os.path.join(tmp, "cache-nopush")
        env3 = w.env(cache3, WAFCACHE_NO_PUSH="1")
        (reqs, hits, writes), _ = w.build(a, env3, clean=True)
        check(writes == 0, "no-push: nothing stored", (reqs, hits, writes))
        (reqs, hits, writes), _ = w.build(a, env3, clean=True)
        check(hits == 0, "no-push: nothing to hit", (reqs, hits, writes))

        print("waf_check: larder missing")
        env4 = w.env(cache, LARDER_BIN=os.path.join(tmp, "no-such-larder"))
        (reqs, hits, writes), text = w.build(a, env4, clean=True)
        check(hits == 0 and writes == 0, "without larder the build runs uncached", (reqs, hits, writes))
        check("caching disabled" in text, "and says why", text)
        check(run_app(a) == "hello from larder\n", "its program runs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("waf_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
