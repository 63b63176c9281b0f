#!/usr/bin/env python3
"""Do blob GETs on an S3 store wait for connections that a garbage-collection pass opened?
Run by hand, never in CI:

    cargo build --release && python3 tests/bench/s3_connections_bench.py [--strace]

A pooled HTTP/1 connection is driven by the runtime of the thread that opened it. wharf runs
its passes on a `SCHED_IDLE` thread, which hardly runs while the CPUs are busy; a request that
takes such a connection from the pool waits for it. Here: SeaweedFS (`weed mini`) and wharf with
its default store in a bucket (no node-local blob cache), some images pushed and half of them
deleted; then, on a server restarted more than the client's pool idle timeout (90 s) before, so
that the pass opens the store's first connection itself, a compaction, followed by blob GETs
beside one busy loop per CPU. The same GETs on a fresh server whose first connections the
requests opened are the reference. With --strace the connections' writes are traced, and the
threads that wrote the requests' GETs are named with their scheduling policy (5 is SCHED_IDLE).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, spawn, stop, stop_all  # noqa: E402
from s3_bench import start_weed, WEED_SH  # noqa: E402
from gc_bench import Content, Client, Pusher, run_loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
REPO = "docker-hosted/"
PASSWORD = "bench-password"
POOL_IDLE_TIMEOUT_S = 90


def busy_loops(n):
    return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(n)]


def end(loops):
    for p in loops:
        p.kill()
        p.wait()


def summary(name, loop):
    s = sorted(loop.samples)
    q = lambda p: s[min(len(s) - 1, int(len(s) * p))] * 1000  # noqa: E731
    print(f"| {name} | {len(s)} | {q(0.5):.2f} | {q(0.95):.2f} | {q(0.99):.2f} | {s[-1] * 1000:.1f} | {len(loop.errors)} |", flush=True)


def threads(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        policy = [line.split(":")[1].strip() for line in open(f"/proc/{pid}/task/{t}/sched") if line.startswith("policy")]
        out[t] = (open(f"/proc/{pid}/task/{t}/comm").read().strip(), policy[0] if policy else "?")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--strace", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="wharf-s3-connections-")
    s3 = None
    try:
        s3 = start_weed(work)
        port = free_port()
        env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=os.path.join(work, "data"), WHARF_ADMIN_PASSWORD=PASSWORD, RUST_LOG="warn",
                   WHARF_S3__ENDPOINT=s3["S3_ENDPOINT"], WHARF_S3__BUCKET="wharf", WHARF_S3__ACCESS_KEY_ID=s3["S3_ACCESS_KEY_ID"],
                   WHARF_S3__SECRET_ACCESS_KEY=s3["S3_SECRET_ACCESS_KEY"], WHARF_S3__FORCE_PATH_STYLE="true", WHARF_BLOB_CACHE__MAX_MIB="0",
                   WHARF_UPLOADS__TTL_SECS="1", WHARF_GC__GRACE_SECS="1", WHARF_GC__SCHEDULE="")
        log = open(os.path.join(work, "wharf.log"), "w")
        server = [spawn([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)]

        def restart():
            stop(server[0])
            server[0] = spawn([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
            wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")

        wait_http(f"http://127.0.0.1:{port}/service/rest/v1/status")
        admin = Client(port, f"admin:{PASSWORD}")
        content = Content(1000, 200, 20)
        pusher = Pusher(admin, REPO)
        pusher.push(content, 8)
        pusher.delete(content, 8)
        time.sleep(1.5)  # past the grace period
        targets = content.kept_small
        n = os.cpu_count()
        print(f"| GETs of small blobs, one after another, {args.seconds:.0f} s | GETs | median ms | p95 ms | p99 ms | max ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")

        restart()
        time.sleep(POOL_IDLE_TIMEOUT_S + 5)  # the connection of the start-up check is gone
        pid = server[0].pid
        trace = None
        if args.strace:
            trace = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=connect,writev", "-p", str(pid), "-o", os.path.join(work, "strace")])
            time.sleep(1)
        st, report = admin.json("POST", "/service/rest/v1/blobstores/default/compact")
        assert st == 200, (st, report)
        loops = busy_loops(n)
        time.sleep(1)
        summary(f"{n} busy loops, after a compaction ({report['blobCount']} blobs) opened the store's connections", run_loop(Client(port, f"admin:{PASSWORD}"), REPO, targets, args.seconds, 0))
        end(loops)
        if trace:
            trace.terminate()
            trace.wait()
            names = threads(pid)
            writers = Counter(line.split()[0] for line in open(os.path.join(work, "strace")) if "GET /wharf/blobs/" in line)
            for tid, count in writers.most_common():
                name, policy = names.get(tid, ("?", "?"))
                print(f"  GETs written by thread {tid} ({name}, policy {policy}): {count}")

        restart()
        run_loop(Client(port, f"admin:{PASSWORD}"), REPO, targets, 2, 0)  # the requests open the connections
        loops = busy_loops(n)
        time.sleep(1)
        summary(f"{n} busy loops, on connections the requests opened", run_loop(Client(port, f"admin:{PASSWORD}"), REPO, targets, args.seconds, 0))
        end(loops)
    finally:
        stop_all()
        if s3:
            subprocess.run(["bash", WEED_SH, "stop", s3["WEED_DIR"]], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
