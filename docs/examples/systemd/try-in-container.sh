#!/usr/bin/env bash
# Runs the two units beside this script under a real systemd: a throwaway Debian 12 container
# (debootstrap + systemd-nspawn) in which fhir-hcc is installed from a wheel into
# /opt/fhir-hcc/.venv, as docs/registry.md describes, and syncs from SEKMET loaded with
# fixtures/salvage2004 on the host's loopback. The units are used as shipped; a drop-in only
# points ExecStart at the test server and makes the timer fire every minute. Between the two
# timed runs one Encounter is deleted on the server, so the second run has one change to find.
#
# Needs root, `apt-get install debootstrap systemd-container`, and `make install` done (.venv).
# Usage: sudo docs/examples/systemd/try-in-container.sh [ROOTFS]   (a development check, not CI)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
ROOTFS=${1:-/var/tmp/fhir-hcc-systemd-root}
PORT=${PORT:-8090}
BASE="http://127.0.0.1:$PORT/fhir"
DELETED=Encounter/N02-enc-001
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
wait_for() {  # wait_for WHAT COMMAND...: poll every 2 s, give up after 5 minutes
    local what=$1 deadline=$((SECONDS + 300))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || { echo "gave up waiting for $what" >&2; exit 1; }
        sleep 2
    done
}

# 1. A Debian root with systemd and Python, and fhir-hcc installed from a wheel.
if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$ROOTFS"
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/tmp/host-ca.crt"  # the host's trust, for pip
in_root sh -c 'test -x /usr/bin/python3 -a -x /usr/sbin/useradd ||
    apt-get install -y --no-install-recommends python3-venv passwd'
rm -rf "$ROOTFS/tmp/wheel" "$ROOTFS/tmp/source" && mkdir -p "$ROOTFS/tmp/wheel" "$ROOTFS/tmp/source"
git -C "$REPO" archive HEAD | tar -x -C "$ROOTFS/tmp/source"  # the build leaves the checkout be
"$REPO/.venv/bin/pip" wheel --no-deps --quiet -w "$ROOTFS/tmp/wheel" "$ROOTFS/tmp/source"
cp "$REPO/constraints.txt" "$ROOTFS/tmp/wheel/"
wheel=/tmp/wheel/$(basename "$ROOTFS"/tmp/wheel/fhir_hcc-*.whl)
in_root sh -c 'test -x /opt/fhir-hcc/.venv/bin/python || python3 -m venv /opt/fhir-hcc/.venv'
in_root /opt/fhir-hcc/.venv/bin/pip install --quiet --force-reinstall --no-deps \
    "$wheel"
in_root env PIP_CERT=/tmp/host-ca.crt /opt/fhir-hcc/.venv/bin/pip install --quiet \
    -c /tmp/wheel/constraints.txt "$wheel"

# 2. The service account, its settings, the units as shipped and the demo drop-ins.
in_root sh -c 'id fhirhcc >/dev/null 2>&1 || useradd --system --no-create-home fhirhcc'
mkdir -p "$ROOTFS/etc/fhir-hcc"
echo "FHIR_HCC_REGISTRY=/var/lib/fhir-hcc/registry.sqlite" >"$ROOTFS/etc/fhir-hcc/sync.env"
chmod 600 "$ROOTFS/etc/fhir-hcc/sync.env"
rm -rf "$ROOTFS/var/lib/fhir-hcc" "$ROOTFS/var/lib/private/fhir-hcc"
units="$ROOTFS/etc/systemd/system"
cp "$HERE/fhir-hcc-sync.service" "$HERE/fhir-hcc-sync.timer" "$units/"
mkdir -p "$units/fhir-hcc-sync.service.d" "$units/fhir-hcc-sync.timer.d"
printf '[Service]\nExecStart=\nExecStart=/opt/fhir-hcc/.venv/bin/fhir-hcc sync %s %s\n' \
    "$BASE" "--no-type-filter" >"$units/fhir-hcc-sync.service.d/demo.conf"
printf '[Timer]\nOnCalendar=\nOnCalendar=*:*:00\nRandomizedDelaySec=0\nAccuracySec=1s\n' \
    >"$units/fhir-hcc-sync.timer.d/demo.conf"
systemctl --root="$ROOTFS" enable fhir-hcc-sync.timer

# 3. The test server on the host's loopback (the container shares the host's network).
"$REPO/.venv/bin/python" "$REPO/tests/fhir_server.py" "$REPO/fixtures/salvage2004" \
    --port "$PORT" --work-dir "$ROOTFS.sekmet" >"$ROOTFS.sekmet.log" 2>&1 &
server=$!
container=
cleanup() {
    [ -n "$container" ] && kill "$container" 2>/dev/null && wait "$container" 2>/dev/null
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    return 0
}
trap cleanup EXIT
server_ready() {
    kill -0 "$server" 2>/dev/null || { cat "$ROOTFS.sekmet.log"; exit 1; }
    grep -q "^http" "$ROOTFS.sekmet.log"
}
wait_for "the test server" server_ready

# 4. Boot systemd as the container's PID 1 and let the timer fire twice.
systemd-nspawn --quiet --keep-unit --register=no --directory="$ROOTFS" --boot >"$ROOTFS.console.log" 2>&1 &
container=$!
booted() { init=$(pgrep --parent "$container" --exact systemd); }
wait_for "systemd in the container" booted
in_container() { nsenter --target "$init" --all /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
timer_active() { in_container systemctl is-active --quiet fhir-hcc-sync.timer; }
wait_for "the timer" timer_active
in_container systemctl list-timers fhir-hcc-sync.timer --no-pager
runs_at_least() {
    local finished
    finished=$(in_container journalctl --boot -u fhir-hcc-sync.service -o cat --no-pager |
        grep -c -e "^Finished" -e "^Failed" || true)
    [ "$finished" -ge "$1" ]
}
wait_for "the first timed run" runs_at_least 1
curl --silent --fail -X DELETE "$BASE/$DELETED" >/dev/null
echo "deleted $DELETED on the server"
wait_for "the second timed run" runs_at_least 2

# 5. What systemd and the registry saw.
in_container journalctl --boot -u fhir-hcc-sync.service --no-pager -o short-iso
in_container runuser -u fhirhcc -- /opt/fhir-hcc/.venv/bin/fhir-hcc registry history \
    --registry /var/lib/fhir-hcc/registry.sqlite
in_container systemctl poweroff
wait "$container" || true
container=
