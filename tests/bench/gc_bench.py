#!/usr/bin/env python3
"""Side-by-side benchmark of garbage collection: wharf's online GC against the CNCF Distribution
registry's offline `registry garbage-collect` (Debian's `docker-registry` 2.8), on the same
content, in one run. Run by hand, never in CI:

    cargo build --release && python3 tests/bench/gc_bench.py [--blobs 10000 --manifests 2000] [--rounds 3]

The content (issue 12): `--blobs` distinct blobs and `--manifests` OCI image manifests over
`--images` images, pushed with raw HTTP (monolithic blob uploads, then manifest PUTs), the same
bytes to both servers. Most blobs are small (1-4 KiB: every image config and most layers); a
few are large so that bytes matter: a 256 KiB base layer shared by every manifest of an image
(kept and deleted alike: it must survive), and 1 MiB layers of which half are used only by
manifests that get deleted. Half of the manifests are then deleted by digest on both servers,
which leaves their configs, their own layers and their manifest blobs unreferenced.

Then, for each server:
  - Distribution: stopped (its GC must not run beside a live registry), then
    `docker-registry garbage-collect --delete-untagged CONFIG` is timed; its peak RSS is the
    child's ru_maxrss. It cannot serve pulls while it collects.
  - wharf: online. The "Docker - Delete unused manifests and images" task (which unlinks the
    blobs no remaining manifest of an image uses, and frees those of them nothing else names
    beside its run), then a compaction of the blob store (which deletes what nothing names: here
    the manifests deleted by digest); their sum is wharf's GC time. While they run, a thread loops
    GETs of kept small blobs (latency during GC) against the same loop beforehand (without GC);
    peak RSS during the GC is VmHWM after resetting it (/proc/<pid>/clear_refs) just before,
    cross-checked by sampling VmRSS.
  - Both: bytes on disk before and after (blob content, and the whole data directory); every
    kept manifest and each of its blobs is pulled and its digest checked, and the deleted ones
    must be gone.

It prints a markdown table with the ratios and the goals of issue 12.
"""
import argparse, base64, hashlib, http.client, json, multiprocessing, os, random, shutil, signal, statistics, subprocess, sys, tempfile, threading, time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import PROCS, free_port, wait_http, rss_kb, io_bytes, spawn, stop, stop_all  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
PASSWORD = "bench-password"
REPO = "docker-hosted"  # wharf's repository; its images are /v2/docker-hosted/<image>
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
SHARED_BASES, LARGE_KEPT, LARGE_GONE = 5, 10, 10


# ---- content --------------------------------------------------------------------------------


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Content:
    """What both servers receive: blobs by digest, manifests by (image, tag), and which of them
    get deleted."""

    def __init__(self, n_blobs, n_manifests, n_images, seed=12):
        rng = random.Random(seed)
        self.blobs = {}
        self.images = [f"gc/app{k:03d}" for k in range(n_images)]

        def blob(data):
            d = sha(data)
            assert d not in self.blobs
            self.blobs[d] = data
            return d

        bases = [blob(rng.randbytes(256 << 10)) for _ in range(SHARED_BASES)]
        large_kept = [blob(rng.randbytes(1 << 20)) for _ in range(LARGE_KEPT)]
        large_gone = [blob(rng.randbytes(1 << 20)) for _ in range(LARGE_GONE)]
        n_small = n_blobs - n_manifests - len(self.blobs)
        assert n_small >= n_manifests, "too few blobs for that many manifests"
        small = [blob(rng.randbytes(rng.randint(1024, 4096))) for _ in range(n_small)]

        self.manifests = []  # dicts: image, tag, body, digest, blobs (config first), kept
        for i in range(n_manifests):
            k, j = i % n_images, i // n_images
            kept = j % 2 == 0  # within each image, every other manifest goes
            pad = rng.randbytes(rng.randint(256, 1536)).hex()
            config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": f"{i}", "pad": pad}},
                                      "rootfs": {"type": "layers", "diff_ids": []}}).encode())
            layers = [bases[k % SHARED_BASES], (large_kept if kept else large_gone)[k % LARGE_KEPT]] + small[i::n_manifests]
            body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": len(self.blobs[config])},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(self.blobs[d])} for d in layers]},
                              separators=(",", ":")).encode()
            self.manifests.append({"image": self.images[k], "tag": f"v{j}", "body": body, "digest": sha(body), "blobs": [config] + layers, "kept": kept})

        kept_blobs = {d for m in self.manifests if m["kept"] for d in m["blobs"]}
        all_blobs = {d for m in self.manifests for d in m["blobs"]}
        assert all_blobs == set(self.blobs)
        gone = [m for m in self.manifests if not m["kept"]]
        gone_blobs = all_blobs - kept_blobs
        # What a correct collection frees: the deleted manifests' own bytes (a manifest is a
        # blob in both stores) and the blobs only they used.
        self.garbage_count = len(gone) + len(gone_blobs)
        self.garbage_bytes = sum(len(m["body"]) for m in gone) + sum(len(self.blobs[d]) for d in gone_blobs)
        self.stored_count = len(self.manifests) + len(self.blobs)
        self.stored_bytes = sum(len(m["body"]) for m in self.manifests) + sum(len(b) for b in self.blobs.values())
        self.gone_blobs = sorted(gone_blobs)
        # For the latency loop: small blobs that stay, with the image that links them.
        self.kept_small = [(m["image"], m["blobs"][0]) for m in self.manifests if m["kept"]]


# ---- HTTP -----------------------------------------------------------------------------------


class Client:
    """Keep-alive HTTP/1.1, one connection per thread."""

    def __init__(self, port, auth=None):
        self.port = port
        self.headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return c

    def req(self, method, path, body=None, headers=None):
        h = dict(self.headers, **(headers or {}))
        for attempt in (0, 1):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    self.local.c = None
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                c.close()
                self.local.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, doc=None):
        body = json.dumps(doc).encode() if doc is not None else None
        st, _, data = self.req(method, path, body, {"Content-Type": "application/json"} if body else None)
        return st, (json.loads(data) if data else None)


def path_of(location):
    """A Location header as a request path (it may be absolute)."""
    u = urllib.parse.urlsplit(location)
    return u.path + (f"?{u.query}" if u.query else "")


class Pusher:
    def __init__(self, client, prefix):
        self.c = client
        self.prefix = prefix  # "" for Distribution, "docker-hosted/" for wharf
        self.monolithic = None  # does POST ?digest= with the body store the blob?
        self.first_image = {}

    def v2(self, image, rest):
        return f"/v2/{self.prefix}{image}/{rest}"

    def put_session(self, image, digest, data, location):
        p = path_of(location)
        st, _, body = self.c.req("PUT", p + ("&" if "?" in p else "?") + "digest=" + digest, data, {"Content-Type": "application/octet-stream"})
        assert st == 201, (st, body[:300])

    def blob(self, image, digest, data):
        src = self.first_image.get(digest)
        if src is not None:
            st, h, _ = self.c.req("POST", self.v2(image, f"blobs/uploads/?mount={digest}&from={self.prefix}{src}"), b"")
            if st == 201:
                return
            assert st == 202, st
            return self.put_session(image, digest, data, h["location"])
        if self.monolithic is not False:
            st, h, body = self.c.req("POST", self.v2(image, f"blobs/uploads/?digest={digest}"), data, {"Content-Type": "application/octet-stream"})
            if st == 201:
                self.monolithic = True
                return
            assert st == 202, (st, body[:300])
            self.monolithic = False  # a session was opened and the body ignored
            return self.put_session(image, digest, data, h["location"])
        st, h, body = self.c.req("POST", self.v2(image, "blobs/uploads/"), b"")
        assert st == 202, (st, body[:300])
        self.put_session(image, digest, data, h["location"])

    def push(self, content, threads):
        from concurrent.futures import ThreadPoolExecutor
        # Blob uploads: every (image, blob) pair once; the first pair of a blob uploads it, the
        # others mount it from that image (as a client would).
        pairs = []
        seen = set()
        for m in content.manifests:
            for d in m["blobs"]:
                if (m["image"], d) not in seen:
                    seen.add((m["image"], d))
                    pairs.append((m["image"], d))
        firsts, mounts = [], []
        for image, d in pairs:
            if d in self.first_image:
                mounts.append((image, d))
            else:
                self.first_image[d] = image
                firsts.append((image, d))
        self.first_image = {}
        self.blob(*firsts[0], content.blobs[firsts[0][1]])  # settles `monolithic` before the crowd
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda p: self.blob(p[0], p[1], content.blobs[p[1]]), firsts[1:]))
            self.first_image = {d: image for image, d in firsts}
            list(ex.map(lambda p: self.blob(p[0], p[1], content.blobs[p[1]]), mounts))

            def manifest(m):
                st, h, body = self.c.req("PUT", self.v2(m["image"], f"manifests/{m['tag']}"), m["body"], {"Content-Type": MANIFEST_TYPE})
                assert st == 201, (st, body[:300])
                assert h.get("docker-content-digest") == m["digest"], h
            list(ex.map(manifest, content.manifests))

    def delete(self, content, threads):
        from concurrent.futures import ThreadPoolExecutor

        def one(m):
            st, _, body = self.c.req("DELETE", self.v2(m["image"], f"manifests/{m['digest']}"))
            assert st == 202, (st, body[:300])
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, [m for m in content.manifests if not m["kept"]]))

    def verify(self, content, threads):
        """Every kept manifest pulls by tag, and each of its blobs with the right digest; the
        deleted manifests and the blobs only they used are gone."""
        from concurrent.futures import ThreadPoolExecutor

        def kept(m):
            st, h, body = self.c.req("GET", self.v2(m["image"], f"manifests/{m['tag']}"), headers={"Accept": MANIFEST_TYPE})
            assert st == 200 and sha(body) == m["digest"], (m["image"], m["tag"], st)
            for d in m["blobs"]:
                st, _, data = self.c.req("GET", self.v2(m["image"], f"blobs/{d}"))
                assert st == 200 and sha(data) == d, (m["image"], d, st)
            return len(m["blobs"]) + 1

        def gone(m):
            st, _, _ = self.c.req("GET", self.v2(m["image"], f"manifests/{m['digest']}"), headers={"Accept": MANIFEST_TYPE})
            assert st == 404, (m["image"], m["digest"], st)
            for d in m["blobs"]:
                if d in gone_set:
                    st, _, _ = self.c.req("GET", self.v2(m["image"], f"blobs/{d}"))
                    assert st == 404, (m["image"], d, st)
        gone_set = set(content.gone_blobs)
        with ThreadPoolExecutor(threads) as ex:
            pulled = sum(ex.map(kept, [m for m in content.manifests if m["kept"]]))
            list(ex.map(gone, [m for m in content.manifests if not m["kept"]]))
        return pulled


# ---- measuring ------------------------------------------------------------------------------


def disk(path, blob_file):
    """Bytes under `path`: the blob store's content (files `blob_file` accepts), and all files
    (apparent size and allocated blocks)."""
    out = {"blob_files": 0, "blob_bytes": 0, "all_bytes": 0, "all_alloc": 0, "all_files": 0}
    for root, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            out["all_files"] += 1
            out["all_bytes"] += st.st_size
            out["all_alloc"] += st.st_blocks * 512
            if blob_file(root, f):
                out["blob_files"] += 1
                out["blob_bytes"] += st.st_size
    return out


def wharf_blob_file(root, f):
    return len(f) == 64 and os.sep + "sha256" + os.sep in root + os.sep and os.sep + "uploads" not in root


def registry_blob_file(root, f):
    return f == "data" and os.sep + "blobs" + os.sep in root


class LatencyLoop:
    """GETs of kept small blobs, one after the other on one keep-alive connection, in a process
    of its own: in this one the RSS sampler and the task poller would hold the GIL now and then
    and add their waits to the GETs measured during the GC only."""

    def __init__(self, client, prefix, targets, interval):
        self.c, self.prefix, self.targets, self.interval = client, prefix, targets, interval
        self.samples, self.errors, self.times = [], [], []
        ctx = multiprocessing.get_context("fork")
        self.halt = ctx.Event()
        self.recv, self.send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=self.run, daemon=True)

    def start(self):
        self.proc.start()

    def run(self):
        i = 0
        samples, errors, times = [], [], []
        while not self.halt.is_set():
            image, d = self.targets[i % len(self.targets)]
            i += 1
            t = time.perf_counter()
            st, _, data = self.c.req("GET", f"/v2/{self.prefix}{image}/blobs/{d}")
            samples.append(time.perf_counter() - t)
            times.append(t)
            if st != 200 or sha(data) != d:
                errors.append((image, d, st))
            if self.interval:
                time.sleep(self.interval)
        self.send.send((samples, errors, times))

    def join(self):
        self.samples, self.errors, self.times = self.recv.recv()
        self.proc.join()


def run_loop(client, prefix, targets, seconds, interval):
    loop = LatencyLoop(client, prefix, targets, interval)
    loop.start()
    time.sleep(seconds)
    loop.halt.set()
    loop.join()
    return loop


def timeline(loop, t0, t1, t2):
    """The GETs during the GC in 100 ms steps: where in the pass the slow ones fall."""
    lines = [f"task until {t1 - t0:.2f} s, compaction until {t2 - t0:.2f} s"]
    steps = {}
    for t, lat in zip(loop.times, loop.samples):
        steps.setdefault(int((t - t0) * 10), []).append(lat * 1000)
    for k in sorted(steps):
        v = sorted(steps[k])
        lines.append(f"{k / 10:4.1f} s: {len(v):3d} GETs, median {v[len(v) // 2]:5.2f} ms, max {v[-1]:6.2f} ms")
    return lines


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.halt = pid, 0, threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid, "VmRSS"))
            time.sleep(0.005)


# ---- the two servers ------------------------------------------------------------------------


def registry_side(content, work, threads):
    port = free_port()
    root = os.path.join(work, "registry")
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}
http: {{addr: 127.0.0.1:{port}}}
""")
    res = {}
    reg = spawn(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v2/")
    pusher = Pusher(Client(port), "")
    t = time.time()
    pusher.push(content, threads)
    res["push_s"] = time.time() - t
    res["monolithic"] = pusher.monolithic
    pusher.delete(content, threads)
    # Its GC must not run beside a live registry (its docs: stopped, or read-only).
    stop(reg)
    res["before"] = disk(root, registry_blob_file)

    log = os.path.join(work, "registry-gc.log")
    t = time.perf_counter()
    with open(log, "w") as out:
        gc = spawn(["docker-registry", "garbage-collect", "--delete-untagged", cfg], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(gc.pid, 0)
    res["gc_s"] = time.perf_counter() - t
    gc.returncode = os.waitstatus_to_exitcode(status)
    PROCS.remove(gc)
    assert gc.returncode == 0, open(log).read()[-2000:]
    res["gc_peak_rss_kb"] = usage.ru_maxrss
    res["gc_cpu_s"] = usage.ru_utime + usage.ru_stime
    summary = [line for line in open(log) if "eligible for deletion" in line and "blobs marked" in line]
    res["gc_summary"] = summary[-1].strip() if summary else "?"
    res["after"] = disk(root, registry_blob_file)

    reg = spawn(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v2/")
    res["pulled"] = pusher.verify(content, threads)
    stop(reg)
    return res


def wharf_side(content, work, threads, latency_s, interval, wharf, perf_out=None):
    port = free_port()
    data = os.path.join(work, "wharf-data")
    log = os.environ.get("GC_BENCH_REQUEST_LOG")  # a file for wharf's request log (one line per request, with its time)
    env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=data, WHARF_ADMIN_PASSWORD=PASSWORD,
               RUST_LOG="warn,wharf::request=info" if log else "warn", WHARF_UPLOADS__TTL_SECS="1", WHARF_GC__GRACE_SECS="1", WHARF_GC__SCHEDULE="")
    res = {}
    w = spawn([wharf, "serve"], env=env, stdout=open(log, "w") if log else subprocess.DEVNULL, stderr=open(os.path.join(work, "wharf.log"), "w"))
    wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
    client = Client(port, f"admin:{PASSWORD}")
    pusher = Pusher(client, REPO + "/")
    t = time.time()
    pusher.push(content, threads)
    res["push_s"] = time.time() - t
    res["monolithic"] = pusher.monolithic
    pusher.delete(content, threads)
    time.sleep(1.5)  # past gc.grace_secs (1 s) since the last touch
    res["before"] = disk(data, wharf_blob_file)
    res["rss_before_gc_kb"] = rss_kb(w.pid, "VmRSS")

    targets = content.kept_small[:]
    random.Random(1).shuffle(targets)
    base = run_loop(Client(port, f"admin:{PASSWORD}"), REPO + "/", targets, latency_s, interval)
    assert not base.errors, base.errors[:5]
    res["lat_before"] = base.samples

    st, task = client.json("POST", "/service/rest/v1/tasks", {"type": "repository.docker.gc", "name": "bench", "frequency": {"schedule": "manual"},
                                                              "properties": {"repositoryName": REPO, "olderThanDays": 0}})
    assert st in (200, 201), (st, task)
    tid = task["id"]

    # The GC, with the pull loop and the RSS sampler beside it.
    try:
        with open(f"/proc/{w.pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM: the peak from here on is the GC's
        res["hwm_reset"] = True
    except OSError:
        res["hwm_reset"] = False
    sampler = RssSampler(w.pid)
    loop = LatencyLoop(Client(port, f"admin:{PASSWORD}"), REPO + "/", targets, interval)
    perf = None
    if perf_out:
        perf = spawn(["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf,16384", "-p", str(w.pid), "-o", perf_out],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)  # perf attaches
    sampler.start()
    loop.start()
    io0 = io_bytes(w.pid)
    t0 = time.perf_counter()
    st, _ = client.json("POST", f"/service/rest/v1/tasks/{tid}/run")
    assert st == 204, st
    while True:
        st, runs = client.json("GET", f"/service/rest/v1/tasks/{tid}/runs")
        newest = max(runs["items"], key=lambda r: r["startedAt"]) if runs["items"] else None
        if newest and newest["result"] != "RUNNING":
            break
        time.sleep(0.01)
    t1 = time.perf_counter()
    st, report = client.json("POST", "/service/rest/v1/blobstores/default/compact")
    t2 = time.perf_counter()
    io2 = io_bytes(w.pid)
    res["gc_wrote_bytes"] = io2[1] - io0[1]
    if perf:
        stop(perf, signal.SIGINT)
    loop.halt.set()
    sampler.halt.set()
    loop.join()
    sampler.join()
    assert st == 200, (st, report)
    assert newest["result"] == "OK", newest
    assert not loop.errors, loop.errors[:5]
    task_freed = newest["report"]["repositories"][REPO].get("freed", {"blobCount": 0, "bytes": 0})
    res.update(task_s=t1 - t0, compact_s=t2 - t1, gc_s=t2 - t0, task_server_ms=newest.get("durationMs"), task_message=newest.get("message"), task_freed=task_freed,
               compact_report=report, lat_gc=loop.samples, gc_peak_rss_kb=rss_kb(w.pid, "VmHWM") if res["hwm_reset"] else None,
               gc_peak_rss_sampled_kb=sampler.peak_kb)
    res["timeline"] = timeline(loop, t0, t1, t2)
    res["after"] = disk(data, wharf_blob_file)
    after = run_loop(Client(port, f"admin:{PASSWORD}"), REPO + "/", targets, latency_s, interval)
    assert not after.errors, after.errors[:5]
    res["lat_after"] = after.samples
    # Without GC: the loops just before and just after it, so that a drift of the machine's
    # load (it is shared) weighs on both sides of the comparison alike.
    res["lat_base"] = res["lat_before"] + res["lat_after"]
    # A reference: the same loop beside busy loops on SCHED_IDLE in user space (one per CPU),
    # no GC. On this VM they make the GETs faster, not slower (busy vCPUs never halt, so a
    # waking thread does not wait for the hypervisor): what a pass costs beyond the loop
    # without GC is not its share of the CPUs but what it does in the kernel, where (on a
    # PREEMPT_NONE kernel) a waking request thread cannot preempt it.
    hogs = [spawn(["chrt", "-i", "0", "sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 1)]
    try:
        hogged = run_loop(Client(port, f"admin:{PASSWORD}"), REPO + "/", targets, latency_s, interval)
    finally:
        for h in hogs:
            stop(h, signal.SIGKILL)
    assert not hogged.errors, hogged.errors[:5]
    res["lat_hog"] = hogged.samples
    res["pulled"] = pusher.verify(content, threads)
    stop(w)
    return res


# ---- report ---------------------------------------------------------------------------------


def mb(b):
    return f"{b / 1e6:.1f}"


def one_round(args, content, n):
    """Both servers on fresh data directories (Distribution first, then wharf); `(None, w)`
    with `--only wharf`."""
    work = tempfile.mkdtemp(prefix="wharf-gc-bench-", dir=args.workdir)
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", work], capture_output=True, text=True).stdout.strip().split("\n")[0]
    print(f"round {n + 1} of {args.rounds}: data in {work} ({fs or 'file system unknown'})", flush=True)
    try:
        r = registry_side(content, work, args.threads) if args.only is None else None
        if r:
            print(f"Distribution: pushed in {r['push_s']:.1f} s (monolithic POST: {r['monolithic']}), GC {r['gc_s']:.2f} s: {r['gc_summary']}", flush=True)
        w = wharf_side(content, work, args.threads, args.latency_seconds, args.pull_interval_ms / 1e3, args.wharf, args.perf)
        print(f"wharf: pushed in {w['push_s']:.1f} s (monolithic POST: {w['monolithic']}), task {w['task_s']:.2f} s (server's clock {w['task_server_ms']} ms; {w['task_message']}), "
              f"compact {w['compact_s']:.2f} s ({w['compact_report']['blobCount']} blobs, {w['compact_report']['bytes']} bytes)", flush=True)
        if args.timeline:
            print("GETs during wharf's GC: " + "\n  ".join(w["timeline"]), flush=True)
    finally:
        stop_all()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return r, w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blobs", type=int, default=10_000)
    ap.add_argument("--manifests", type=int, default=2_000)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--threads", type=int, default=8, help="client threads for pushing and verifying")
    ap.add_argument("--latency-seconds", type=float, default=5, help="length of each pull loop without GC (one before it, one after)")
    ap.add_argument("--pull-interval-ms", type=float, default=2,
                    help="pause between the pull loop's GETs (0: back to back, which on 2 cores measures CPU sharing more than the GC)")
    ap.add_argument("--wharf", default=WHARF)
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds on fresh data directories; the table gives each side's median GC time (the ratio is of the medians) and the GETs of every round; with --only wharf, a line per round")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--workdir", help="where the temporary directory goes (default: $TMPDIR); both servers' data is there")
    ap.add_argument("--only", choices=("wharf",), help="skip Distribution (no table: for profiling wharf's side)")
    ap.add_argument("--timeline", action="store_true", help="print the GETs during wharf's GC in 100 ms steps")
    ap.add_argument("--perf", metavar="FILE", help="record wharf's GC with `perf record --call-graph dwarf` into FILE (slows the GC down)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    for tool in ("docker-registry",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install docker-registry")
    if not os.path.exists(args.wharf):
        raise SystemExit("build first: cargo build --release")

    content = Content(args.blobs, args.manifests, args.images)
    print(f"content: {len(content.blobs)} blobs and {len(content.manifests)} manifests over {len(content.images)} images, "
          f"{mb(content.stored_bytes)} MB; garbage after the deletes: {content.garbage_count} blobs (manifests included), "
          f"{mb(content.garbage_bytes)} MB", flush=True)
    rounds = []
    for n in range(args.rounds):
        r, w = one_round(args, content, n)
        rounds.append((r, w))
    if rounds[0][0] is None:
        for _, w in rounds:
            print(f"wharf: GC {w['gc_s']:.2f} s; blob GET median / p95 without GC {statistics.median(w['lat_base']) * 1e3:.2f} / {pct(w['lat_base'], 0.95) * 1e3:.2f} ms, "
                  f"during {statistics.median(w['lat_gc']) * 1e3:.2f} / {pct(w['lat_gc'], 0.95) * 1e3:.2f} ms, beside SCHED_IDLE busy loops "
                  f"{statistics.median(w['lat_hog']) * 1e3:.2f} / {pct(w['lat_hog'], 0.95) * 1e3:.2f} ms; peak RSS {w['gc_peak_rss_sampled_kb'] / 1024:.1f} MB; "
                  f"wrote {mb(w['gc_wrote_bytes'])} MB during the GC (task {w['task_s']:.2f} s, compaction {w['compact_s']:.2f} s)")
        return

    # Both must free exactly the garbage: blob content is compared to the byte; the data
    # directories differ by what each keeps besides blobs (Distribution's link files, wharf's
    # SQLite database, which does not shrink when rows go).
    freed = {}
    for r, w in rounds:
        for name, s in (("wharf", w), ("registry", r)):
            before, after = s["before"], s["after"]
            assert before["blob_files"] == content.stored_count and before["blob_bytes"] == content.stored_bytes, (name, before, content.stored_count)
            freed[name] = (before["blob_files"] - after["blob_files"], before["blob_bytes"] - after["blob_bytes"])
            assert freed[name] == (content.garbage_count, content.garbage_bytes), (name, freed[name], content.garbage_count, content.garbage_bytes)
            assert s["pulled"] == sum(len(m["blobs"]) + 1 for m in content.manifests if m["kept"])
        reported = (w["compact_report"]["blobCount"] + w["task_freed"]["blobCount"], w["compact_report"]["bytes"] + w["task_freed"]["bytes"])
        assert reported == (content.garbage_count, content.garbage_bytes), (w["compact_report"], w["task_freed"])
    r, w = rounds[-1]

    # Over several rounds, each side's median time, and the GETs of every round pooled: a
    # round's 150-200 GETs during its GC make a p95 of its 8th-10th slowest.
    def pooled(key):
        return [x for _, w in rounds for x in w[key]]
    lat_base, lat_gc, lat_hog = pooled("lat_base"), pooled("lat_gc"), pooled("lat_hog")
    lat_before, lat_after = pooled("lat_before"), pooled("lat_after")
    base_med, base_p95 = statistics.median(lat_base) * 1e3, pct(lat_base, 0.95) * 1e3
    gc_med, gc_p95 = statistics.median(lat_gc) * 1e3, pct(lat_gc, 0.95) * 1e3
    hog_med, hog_p95 = statistics.median(lat_hog) * 1e3, pct(lat_hog, 0.95) * 1e3
    before_med, before_p95 = statistics.median(lat_before) * 1e3, pct(lat_before, 0.95) * 1e3
    after_med, after_p95 = statistics.median(lat_after) * 1e3, pct(lat_after, 0.95) * 1e3
    w_gc = statistics.median(w["gc_s"] for _, w in rounds)
    r_gc = statistics.median(r["gc_s"] for r, _ in rounds)
    w_task = statistics.median(w["task_s"] for _, w in rounds)
    w_compact = statistics.median(w["compact_s"] for _, w in rounds)
    speedup = r_gc / w_gc
    peak = max(w["gc_peak_rss_kb"] if w["gc_peak_rss_kb"] is not None else w["gc_peak_rss_sampled_kb"] for _, w in rounds)
    r_peak = max(r["gc_peak_rss_kb"] for r, _ in rounds)
    lat_ratio = max(gc_med / base_med, gc_p95 / base_p95)
    each = ", ".join(f"{w['gc_s']:.2f} vs {r['gc_s']:.2f} ({r['gc_s'] / w['gc_s']:.1f}×)" for r, w in rounds)
    median_of = f"median of {len(rounds)}, " if len(rounds) > 1 else ""

    def ok(cond):
        return "met" if cond else "**missed**"
    rows = [
        (f"GC wall time ({median_of}s)", f"{w_gc:.2f}", f"{r_gc:.2f}", f"{speedup:.1f}× faster", "≥ 5× faster", ok(speedup >= 5)),
        ("  wharf: Docker unused-manifests task, s", f"{w_task:.2f}", "", "", "", ""),
        ("  wharf: compact blob store, s", f"{w_compact:.2f}", "", "", "", ""),
        ("blobs freed (manifests included)", f"{freed['wharf'][0]}", f"{freed['registry'][0]}", "", f"= {content.garbage_count}", ok(True)),
        ("blob bytes freed, MB", mb(freed["wharf"][1]), mb(freed["registry"][1]), "", f"= {mb(content.garbage_bytes)}", ok(True)),
        ("blob bytes on disk before → after, MB", f"{mb(w['before']['blob_bytes'])} → {mb(w['after']['blob_bytes'])}",
         f"{mb(r['before']['blob_bytes'])} → {mb(r['after']['blob_bytes'])}", "", "", ""),
        ("data dir allocated before → after, MB", f"{mb(w['before']['all_alloc'])} → {mb(w['after']['all_alloc'])}",
         f"{mb(r['before']['all_alloc'])} → {mb(r['after']['all_alloc'])}", "", "", ""),
        ("files in data dir before → after", f"{w['before']['all_files']} → {w['after']['all_files']}", f"{r['before']['all_files']} → {r['after']['all_files']}", "", "", ""),
        ("peak RSS during GC, MB", f"{peak / 1024:.1f}", f"{r_peak / 1024:.1f}", "", "< 100 (wharf)", ok(peak < 100 * 1024)),
        ("blob GET without GC (before and after it), median / p95 ms", f"{base_med:.2f} / {base_p95:.2f}", "", "", "", ""),
        ("blob GET during GC, median / p95 ms", f"{gc_med:.2f} / {gc_p95:.2f}", "no answer: stopped", f"{gc_med / base_med:.2f} / {gc_p95 / base_p95:.2f}",
         "within 20%", ok(lat_ratio <= 1.2)),
        ("blob GET beside SCHED_IDLE busy loops in user space, one per CPU, no GC, median / p95 ms", f"{hog_med:.2f} / {hog_p95:.2f}", "",
         f"{hog_med / base_med:.2f} / {hog_p95 / base_p95:.2f}", "", ""),
        ("kept manifests and blobs pulled, digests checked", f"{w['pulled']}", f"{r['pulled']}", "", "all", ok(True)),
    ]
    print()
    print(f"{args.blobs} blobs, {args.manifests} manifests over {args.images} images, "
          f"{mb(content.stored_bytes)} MB stored; half of the manifests deleted: {content.garbage_count} blobs, {mb(content.garbage_bytes)} MB of garbage")
    print()
    print("| | wharf (online) | Distribution (offline) | ratio | goal | |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"- Distribution cannot serve while `garbage-collect` runs: the registry is stopped for it (its documentation: stopped or "
          f"read-only); its pass used {r['gc_cpu_s']:.2f} s of CPU. Its summary: {r['gc_summary']}")
    if len(rounds) > 1:
        print(f"- Each round's GC, wharf vs Distribution, s: {each}. Peak RSS is the highest of the rounds; the GETs are those of every round")
    print(f"- wharf served {len(lat_gc)} blob GETs during its GC, none failed (one client, {args.pull_interval_ms:g} ms between GETs; "
          f"without GC: {len(lat_before)} in {args.latency_seconds:g} s before it, median / p95 {before_med:.2f} / {before_p95:.2f} ms, "
          f"{len(lat_after)} after it, {after_med:.2f} / {after_p95:.2f} ms). Task run (server's own clock): {w['task_server_ms']} ms: "
          f"{w['task_message']} (the last round). Peak RSS sampled every 5 ms: {max(w['gc_peak_rss_sampled_kb'] for _, w in rounds) / 1024:.1f} MB; "
          f"before the GC: {w['rss_before_gc_kb'] / 1024:.1f} MB (the last round).")


if __name__ == "__main__":
    main()
