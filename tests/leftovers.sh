# Sourced by tests/run.sh (and tests/cli.rs tests it): each test command runs in a session (and
# process group) of its own through `in_own_group`. On exit, however the script exits, whatever
# is left in those groups (a helper a test started and did not stop) is named and killed, and
# the run fails even if every test passed: a test that leaves a process behind is a failing
# test. A run that failed already keeps its own exit code.
#
#   leftovers_on_exit CLEANUP   installs the traps; the function CLEANUP runs after the kill
#   in_own_group CMD...         runs CMD in a group of its own and waits for it

TEST_GROUPS=()
LEFTOVERS_CLEANUP=:

alive_in_group() {
    local pids
    pids=$(pgrep -d, -g "$1") || return 0
    # Exited processes waiting to be reaped (zombies) are gone already.
    ps -o pid=,stat=,args= -p "$pids" | awk '$2 !~ /^Z/'
}

# Kills what is left in the test groups; fails when there was anything to kill.
kill_leftovers() {
    local g left found=0
    for g in "${TEST_GROUPS[@]}"; do
        left=$(alive_in_group "$g")
        if [ -n "$left" ]; then
            echo "== killing what the tests left behind:" >&2
            echo "$left" >&2
            kill -KILL -- "-$g" 2>/dev/null || true
            found=1
        fi
    done
    return "$found"
}

leftovers_exit() {
    local status=$?
    if ! kill_leftovers && [ "$status" -eq 0 ]; then
        echo "== FAILED: the tests passed but left processes behind (killed above)" >&2
        status=1
    fi
    "$LEFTOVERS_CLEANUP" || true
    exit "$status"
}

leftovers_on_exit() {
    LEFTOVERS_CLEANUP=$1
    trap leftovers_exit EXIT
    # bash runs the EXIT trap on these only when they are trapped.
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

in_own_group() {
    setsid -w "$@" &
    TEST_GROUPS+=("$!")
    wait "$!"
}
