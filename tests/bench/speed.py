#!/usr/bin/env python3
"""Issue 16's benchmarks in one run: every workload, wharf beside its peers, one report. Run by
hand, never in CI:

    cargo build --release
    bash tests/run.sh    # once, for target/test-venv (twine, pypiserver) and target/test-npm (verdaccio)
    apt-get install docker-registry skopeo apache2-utils curl
    python3 tests/bench/speed.py [--out target/bench-report.md] [--quick] [--only blob,docker]

It runs, one after the other (each starts its own servers on fresh data directories and stops
them): blob_bench (one large blob: uploads and downloads against Distribution, server CPU per
GiB), docker_bench (skopeo push and pull of an image, manifest requests), pypi_bench (simple
pages against pypiserver, cold pip installs), npm_bench (packuments against verdaccio, npm
install) and memory_bench (200 concurrent pulls, five rounds, a 1 GiB push). Each one's output
is printed as it comes and written to the report under a heading, with the commit, the time and
the load average at its start: a busy machine halves some of these numbers.
"""
import argparse, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "tests/bench")

# name, script, arguments, arguments with --quick
WORKLOADS = [
    ("blob", "blob_bench.py", ["--runs", "3", "--markdown"], ["--runs", "1", "--mib", "128", "--markdown"]),
    ("docker", "docker_bench.py", [], ["--layers", "4", "--layer-mib", "32", "--seconds", "4"]),
    ("pypi", "pypi_bench.py", [], ["--projects", "10", "--seconds", "4"]),
    ("npm", "npm_bench.py", [], ["--packages", "10", "--seconds", "4"]),
    ("memory", "memory_bench.py", [], ["--clients", "50", "--rounds", "2", "--big-mib", "256", "--settle", "11"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench-report.md"))
    ap.add_argument("--quick", action="store_true", help="smaller workloads: a check that everything runs, not numbers to keep")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(w[0] for w in WORKLOADS))
    args = ap.parse_args()
    chosen = set(args.only.split(",")) if args.only else None
    env = dict(os.environ)
    tools = [os.path.join(ROOT, "target/test-venv/bin"), os.path.join(ROOT, "target/test-npm/node_modules/.bin")]
    env["PATH"] = os.pathsep.join(tools + [env.get("PATH", "")])
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    report = [f"# wharf benchmarks, {time.strftime('%Y-%m-%d %H:%M')} UTC, {commit}{' (quick)' if args.quick else ''}", ""]
    failed = []
    for name, script, full, quick in WORKLOADS:
        if chosen and name not in chosen:
            continue
        load = os.getloadavg()[0]
        cmd = [sys.executable, os.path.join(BENCH, script), *(quick if args.quick else full)]
        print(f"\n== {name}: {' '.join(cmd[1:])} (load average {load:.1f})", flush=True)
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        code = proc.wait()
        took = time.time() - started
        report += [f"## {name} ({script}; load average {load:.1f} at its start; {took:.0f} s)", ""]
        if code != 0:
            failed.append(name)
            report.append(f"**failed** (exit {code})")
            report.append("")
        # A markdown table is kept as it is; everything else goes in as printed.
        table_at = next((i for i, l in enumerate(lines) if l.startswith("| ")), None)
        text = [l for l in (lines if table_at is None else lines[:table_at]) if l.strip()]
        if text:
            report += ["```", *text, "```", ""]
        if table_at is not None:
            report += [*lines[table_at:], ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(report) + "\n")
    print(f"\nreport: {args.out}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
