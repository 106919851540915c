#! /usr/bin/env python
# encoding: utf-8

"""
Share and re-use build outputs through larder: a drop-in for waf's wafcache tool.

It hooks the same task methods as wafcache (``run``/``post_run`` of every cached task class,
``Task.uid``, ``BuildContext.hash_env_vars``, so signatures do not depend on the checkout's
path) and speaks wafcache's worker protocol, but its pre-forked workers are
``larder worker --protocol wafcache`` processes instead of copies of the Python script. The
cache is whatever larder is configured to use: a directory, a larder server, a bucket, with
larder's trimming and eviction policies.

Switching from wafcache is one line::

	def build(bld):
		bld.load('larder_cache', tooldir='path/to/larder/integrations/waf')   # was: bld.load('wafcache')

The variables wafcache users set keep working:

* WAFCACHE: the store (a directory, or any larder store URL); larder reads it itself
* WAFCACHE_NO_PUSH: never store (the tool does not even ask)
* WAFCACHE_STATS: print requests, hits, hit ratio and writes at the end of the build
* WAFCACHE_VERBOSITY: say what was fetched and stored
* WAFCACHE_ASYNC_WORKERS=N: answer stores at once and upload in the background, N transfers at
  a time per worker (``larder worker --upload-workers N``); the build waits for them at the end
* WAFCACHE_ASYNC_NOWAIT: with WAFCACHE_ASYNC_WORKERS, do not wait: abandon unfinished uploads
* WAFCACHE_EVICT_MAX_BYTES, WAFCACHE_TRIM_MAX_FOLDER: read by larder (trim budget)

And one of larder's own:

* LARDER_BIN: the larder binary (default: ``larder`` on PATH); other LARDER_* variables and
  larder.toml configure larder as usual

If larder cannot be found or a worker dies, the build goes on without the cache (a warning),
never fails because of it.
"""

import atexit, os, shutil, subprocess, threading

try:
	import cPickle
except ImportError:
	import pickle as cPickle
import base64

from waflib import Build, Logs, Task, Utils

OK = "ok"

WAFCACHE_NO_PUSH = 1 if os.environ.get('WAFCACHE_NO_PUSH') else 0
WAFCACHE_VERBOSITY = 1 if os.environ.get('WAFCACHE_VERBOSITY') else 0
WAFCACHE_STATS = 1 if os.environ.get('WAFCACHE_STATS') else 0
WAFCACHE_ASYNC_WORKERS = os.environ.get('WAFCACHE_ASYNC_WORKERS')
WAFCACHE_ASYNC_NOWAIT = os.environ.get('WAFCACHE_ASYNC_NOWAIT')

# Seconds to wait for the workers at exit (uploads still running are finished first).
EXIT_WAIT = 600

process_pool = []
all_procs = []
pool_lock = threading.Lock()
disabled = []  # holds the reason once the cache is off for this process


def larder_bin():
	return os.environ.get('LARDER_BIN') or shutil.which('larder')


def worker_cmd():
	"""The command line of one worker process."""
	exe = larder_bin()
	if not exe:
		raise OSError('larder not found: put it on PATH or set LARDER_BIN')
	cmd = [exe, 'worker', '--protocol', 'wafcache']
	if WAFCACHE_ASYNC_WORKERS:
		try:
			n = int(WAFCACHE_ASYNC_WORKERS)
		except ValueError:
			Logs.warn('Invalid WAFCACHE_ASYNC_WORKERS specified: %r' % WAFCACHE_ASYNC_WORKERS)
		else:
			if n > 0:
				cmd += ['--upload-workers', str(n)]
				if WAFCACHE_ASYNC_NOWAIT:
					cmd.append('--no-wait')
	return cmd


def worker_env():
	env = dict(os.environ)
	# The tool prints the build's statistics; one line per worker would repeat them.
	env.pop('WAFCACHE_STATS', None)
	return env


def disable(why):
	if not disabled:
		disabled.append(why)
		Logs.warn('larder_cache: caching disabled: %s' % why)


def get_process():
	"""
	Returns a worker process that can process cache commands; it goes back to the pool when
	unused. None when the cache is disabled.
	"""
	if disabled:
		return None
	try:
		return process_pool.pop()
	except IndexError:
		pass
	try:
		proc = subprocess.Popen(worker_cmd(), stdout=subprocess.PIPE, stdin=subprocess.PIPE,
			env=worker_env(), bufsize=0)
	except OSError as e:
		disable(str(e))
		return None
	with pool_lock:
		all_procs.append(proc)
	return proc


def cache_command(proc, sig, files_from, files_to):
	"""
	Send one command (wafcache's protocol: base64 of a pickled [sig, files_from, files_to]) and
	return the answer text; a dead worker is an error text, never an exception.
	"""
	obj = base64.b64encode(cPickle.dumps([sig, files_from, files_to]))
	try:
		proc.stdin.write(obj + b'\n')
		proc.stdin.flush()
		obj = proc.stdout.readline()
	except (OSError, ValueError):
		obj = b''
	if not obj:
		with pool_lock:
			if proc in all_procs:
				all_procs.remove(proc)
		try:
			proc.kill()
		except OSError:
			pass
		return 'larder worker %r died' % proc.pid
	return cPickle.loads(base64.b64decode(obj))


def release(proc):
	"""Return a live worker to the pool."""
	if proc.poll() is None and proc in all_procs:
		process_pool.append(proc)


def can_retrieve_cache(self):
	"""
	New method for waf Task classes
	"""
	if not self.outputs:
		return False

	self.cached = False

	sig = self.signature()
	ssig = Utils.to_hex(self.uid() + sig)

	if WAFCACHE_STATS:
		self.generator.bld.cache_reqs += 1

	files_to = [node.abspath() for node in self.outputs]
	proc = get_process()
	if proc is None:
		return False
	err = cache_command(proc, ssig, [], files_to)
	release(proc)
	if err.startswith(OK):
		if WAFCACHE_VERBOSITY:
			Logs.pprint('CYAN', '  Fetched %r from cache' % files_to)
		else:
			Logs.debug('larder_cache: fetched %r from cache', files_to)
		if WAFCACHE_STATS:
			self.generator.bld.cache_hits += 1
	else:
		if WAFCACHE_VERBOSITY:
			Logs.pprint('YELLOW', '  No cache entry %s' % files_to)
		else:
			Logs.debug('larder_cache: No cache entry %s: %s', files_to, err)
		return False

	self.cached = True
	return True


def put_files_cache(self):
	"""
	New method for waf Task classes
	"""
	if WAFCACHE_NO_PUSH or getattr(self, 'cached', None) or not self.outputs:
		return

	files_from = []
	for node in self.outputs:
		path = node.abspath()
		if not os.path.isfile(path):
			return
		files_from.append(path)

	bld = self.generator.bld
	old_sig = self.signature()

	for node in self.inputs:
		try:
			del node.ctx.cache_sig[node]
		except KeyError:
			pass

	delattr(self, 'cache_sig')
	sig = self.signature()

	if old_sig == sig:
		ssig = Utils.to_hex(self.uid() + sig)
		proc = get_process()
		if proc is not None:
			# With WAFCACHE_ASYNC_WORKERS the worker answers once it has read the files and
			# uploads in the background: no thread pool is needed here.
			err = cache_command(proc, ssig, files_from, [])
			release(proc)
			if err.startswith(OK):
				if WAFCACHE_VERBOSITY:
					Logs.pprint('CYAN', '  Successfully uploaded %s to cache' % files_from)
				else:
					Logs.debug('larder_cache: Successfully uploaded %r to cache', files_from)
				if WAFCACHE_STATS:
					bld.cache_puts += 1
			else:
				if WAFCACHE_VERBOSITY:
					Logs.pprint('RED', '  Error caching step results %s: %s' % (files_from, err))
				else:
					Logs.debug('larder_cache: Error caching results %s: %s', files_from, err)
	else:
		Logs.debug('larder_cache: skipped %r upload due to late input modifications %r', self.outputs, self.inputs)

	bld.task_sigs[self.uid()] = self.cache_sig


def hash_env_vars(self, env, vars_lst):
	"""
	Reimplement BuildContext.hash_env_vars so that the resulting hash does not depend on local paths
	"""
	if not env.table:
		env = env.parent
		if not env:
			return Utils.SIG_NIL

	idx = str(id(env)) + str(vars_lst)
	try:
		cache = self.cache_env
	except AttributeError:
		cache = self.cache_env = {}
	else:
		try:
			return self.cache_env[idx]
		except KeyError:
			pass

	v = str([env[a] for a in vars_lst])
	v = v.replace(self.srcnode.abspath().__repr__()[:-1], '')
	m = Utils.md5()
	m.update(v.encode())
	ret = m.digest()

	Logs.debug('envhash: %r %r', ret, v)

	cache[idx] = ret

	return ret


def uid(self):
	"""
	Reimplement Task.uid() so that the signature does not depend on local paths
	"""
	try:
		return self.uid_
	except AttributeError:
		m = Utils.md5()
		src = self.generator.bld.srcnode
		up = m.update
		up(self.__class__.__name__.encode())
		for x in self.inputs + self.outputs:
			up(x.path_from(src).encode())
		self.uid_ = m.digest()
		return self.uid_


def make_cached(cls):
	"""
	Enable the cache for a given task class
	"""
	if getattr(cls, 'nocache', None) or getattr(cls, 'has_cache', False):
		return

	full_name = "%s.%s" % (cls.__module__, cls.__name__)
	if full_name in ('waflib.Tools.ccroot.vnum', 'waflib.Build.inst'):
		return

	m1 = getattr(cls, 'run', None)
	def run(self):
		if getattr(self, 'nocache', False):
			return m1(self)
		if self.can_retrieve_cache():
			return 0
		return m1(self)
	cls.run = run

	m2 = getattr(cls, 'post_run', None)
	def post_run(self):
		if getattr(self, 'nocache', False):
			return m2(self)
		ret = m2(self)
		self.put_files_cache()
		return ret
	cls.post_run = post_run
	cls.has_cache = True


def finish_workers(wait=True):
	"""
	End every worker: end of input makes each one finish (or, with WAFCACHE_ASYNC_NOWAIT,
	abandon) its background uploads and exit.
	"""
	with pool_lock:
		procs = list(all_procs)
		del all_procs[:]
	del process_pool[:]
	for proc in procs:
		try:
			proc.stdin.close()
		except OSError:
			pass
	for proc in procs:
		try:
			proc.wait(timeout=EXIT_WAIT if wait else 5)
		except subprocess.TimeoutExpired:
			proc.kill()
			proc.wait()
		try:
			proc.stdout.close()
		except OSError:
			pass
atexit.register(finish_workers)


def build(bld):
	"""
	Called during the build process to enable file caching
	"""
	if WAFCACHE_ASYNC_WORKERS:
		def finalize_upload_async(bld):
			if not WAFCACHE_ASYNC_NOWAIT and all_procs:
				Logs.pprint('CYAN', '... waiting for larder uploads to complete (%d workers)' % len(all_procs))
			finish_workers()
		bld.add_post_fun(finalize_upload_async)

	if WAFCACHE_STATS:
		# Init counter for statistics and hook to print results at the end
		bld.cache_reqs = bld.cache_hits = bld.cache_puts = 0

		def printstats(bld):
			hit_ratio = 0
			if bld.cache_reqs > 0:
				hit_ratio = (bld.cache_hits / bld.cache_reqs) * 100
			Logs.pprint('CYAN', '  larder_cache stats: %s requests, %s hits (ratio: %.2f%%), %s writes' %
					 (bld.cache_reqs, bld.cache_hits, hit_ratio, bld.cache_puts) )
		bld.add_post_fun(printstats)

	if getattr(Task.Task, 'larder_cache_hooked', False):
		# already called once
		return

	if not larder_bin():
		disable('larder not found: put it on PATH or set LARDER_BIN')

	# pre-allocation
	for x in range(bld.jobs):
		proc = get_process()
		if proc is not None:
			process_pool.append(proc)

	Task.Task.can_retrieve_cache = can_retrieve_cache
	Task.Task.put_files_cache = put_files_cache
	Task.Task.uid = uid
	Task.Task.larder_cache_hooked = True
	Build.BuildContext.hash_env_vars = hash_env_vars
	for x in reversed(list(Task.classes.values())):
		make_cached(x)
