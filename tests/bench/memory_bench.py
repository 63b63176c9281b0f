#!/usr/bin/env python3
"""wharf's memory under load (issue 16's memory goals). Run by hand, never in CI:

    cargo build --release && python3 tests/bench/memory_bench.py [--clients 200 --rounds 5]

On a fresh data directory (embedded SQLite, file blob store), a Docker hosted repository with
anonymous pulls, it measures:
  - RSS at start, idle;
  - per round: N concurrent `curl` pulls of one 20 MiB blob (each client its own connection),
    the peak RSS during the round (VmHWM, reset before it through /proc/<pid>/clear_refs) and
    the RSS and thread count `--settle` seconds after it (idle again);
  - one 1 GiB blob pushed with a monolithic PUT (curl -T): the peak, and the RSS after it;
  - `--push-clients` concurrent monolithic PUTs of distinct `--push-mib` blobs, each client
    limited to `--push-rate` (slow clients hold what they sent longest): the peak, and after.
Growth over the rounds shows as idle RSS that climbs from round to round.
"""
import argparse, base64, hashlib, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, wait_http, rss_kb, spawn, stop, write_random  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHARF = os.environ.get("WHARF_BIN", os.path.join(ROOT, "target/release/wharf"))
AUTH = "Basic " + base64.b64encode(b"admin:bench-password").decode()


def idle(pid):
    """RSS, thread count, and the RSS split into (heap and stacks, mapped files such as the
    binary's code) in kB: only the first part is memory the process holds; the second is the
    page cache, shared and reclaimable."""
    return rss_kb(pid, "VmRSS"), rss_kb(pid, "Threads"), (rss_kb(pid, "RssAnon"), rss_kb(pid, "RssFile"))


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")




def push(base, repo, path, digest):
    """A monolithic upload: POST for a session, then one PUT of the whole file with curl."""
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST", data=b"", headers={"Authorization": AUTH})
    loc = urllib.request.urlopen(req).headers["Location"]
    url = (loc if loc.startswith("http") else base + loc) + ("&" if "?" in loc else "?") + "digest=" + digest
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", f"Authorization: {AUTH}",
                          "-H", "Content-Type: application/octet-stream", "-T", path, url], capture_output=True, text=True)
    assert out.stdout == "201", out.stdout + out.stderr


def concurrent_pushes(base, pid, work, args):
    """`--push-clients` monolithic PUTs at once, each of its own blob, each client slowed to
    `--push-rate`."""
    one = os.urandom(args.push_mib << 20)
    jobs = []
    for i in range(args.push_clients):
        data = i.to_bytes(8, "little") + one[8:]
        path = os.path.join(work, f"push-{i}.bin")
        with open(path, "wb") as f:
            f.write(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(f"{base}/v2/mem/many{i % 10}/blobs/uploads/", method="POST", data=b"", headers={"Authorization": AUTH})
        loc = urllib.request.urlopen(req).headers["Location"]
        jobs.append((path, (loc if loc.startswith("http") else base + loc) + ("&" if "?" in loc else "?") + "digest=" + digest))
    reset_peak(pid)
    t0 = time.time()
    clients = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", f"Authorization: {AUTH}",
                                 "-H", "Content-Type: application/octet-stream", "--limit-rate", args.push_rate, "-T", path, url],
                                stdout=subprocess.PIPE, text=True) for path, url in jobs]
    failed = sum(1 for c in clients if c.communicate()[0] != "201")
    took = time.time() - t0
    peak = rss_kb(pid, "VmHWM")
    for path, _ in jobs:
        os.remove(path)
    time.sleep(args.settle)
    label = f"{args.push_clients} pushes of {args.push_mib} MiB at {args.push_rate}B/s each ({took:.1f} s{', %d failed' % failed if failed else ''})"
    return (label, peak, *idle(pid))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blob-mib", type=int, default=20)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--push-clients", type=int, default=200)
    ap.add_argument("--push-mib", type=int, default=8)
    ap.add_argument("--push-rate", default="1M", help="curl --limit-rate of each concurrent push")
    ap.add_argument("--settle", type=float, default=15, help="seconds to wait before an idle measurement (tokio's idle blocking threads exit after 10 s)")
    ap.add_argument("--workdir", default=None, help="where the data directory and test files go (default: a temporary directory)")
    args = ap.parse_args()
    if not os.path.exists(WHARF):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="wharf-mem-", dir=args.workdir)
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, WHARF_LISTEN=f"127.0.0.1:{port}", WHARF_DATA_DIR=os.path.join(work, "data"),
                   WHARF_ADMIN_PASSWORD="bench-password", RUST_LOG="warn")
        w = spawn([WHARF, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{base}/service/rest/v1/status")
        time.sleep(1)
        rows = [("start, idle", None, *idle(w.pid))]
        req = urllib.request.Request(f"{base}/service/rest/v1/repositories/docker/hosted", method="POST",
                                     data=json.dumps({"name": "mem", "anonymousRead": True, "storage": {"blobStoreName": "default"}, "docker": {}}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": AUTH})
        urllib.request.urlopen(req)
        small = os.path.join(work, "small.bin")
        digest = write_random(small, args.blob_mib << 20)
        push(base, "mem/app", small, digest)
        url = f"{base}/v2/mem/app/blobs/{digest}"
        for r in range(1, args.rounds + 1):
            reset_peak(w.pid)
            t0 = time.time()
            clients = [subprocess.Popen(["curl", "-s", "-f", "-o", "/dev/null", url]) for _ in range(args.clients)]
            failed = sum(1 for c in clients if c.wait() != 0)
            took = time.time() - t0
            peak = rss_kb(w.pid, "VmHWM")
            time.sleep(args.settle)
            rows.append((f"round {r}: {args.clients} pulls of {args.blob_mib} MiB ({took:.1f} s{', %d failed' % failed if failed else ''})", peak, *idle(w.pid)))
        big = os.path.join(work, "big.bin")
        big_digest = write_random(big, args.big_mib << 20)
        reset_peak(w.pid)
        t0 = time.time()
        push(base, "mem/big", big, big_digest)
        took = time.time() - t0
        peak = rss_kb(w.pid, "VmHWM")
        time.sleep(args.settle)
        rows.append((f"push of {args.big_mib} MiB, one PUT ({took:.1f} s)", peak, *idle(w.pid)))
        if args.push_clients:
            os.remove(big)
            rows.append(concurrent_pushes(base, w.pid, work, args))
        stop(w)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n| {'':60} | peak MB | after, idle MB | of which anon / file MB | threads |\n|---|---:|---:|---:|---:|")
    for label, peak, rss, threads, (anon, mapped) in rows:
        print(f"| {label:60} | {'' if peak is None else f'{peak / 1024:.1f}'} | {rss / 1024:.1f} | {anon / 1024:.1f} / {mapped / 1024:.1f} | {threads} |")


if __name__ == "__main__":
    main()
