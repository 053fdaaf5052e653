#!/bin/bash
# End-to-end test of deploy/install.sh: debootstrap Debian 12 (bookworm) into
# a temporary folder, copy this checkout in, run install.sh --no-start there
# through chroot, and check what it made: the user and its groups, folder
# owners and modes, the configuration, the units (and systemd-analyze verify
# on them against the real program), a backup, an upgrade that keeps the
# configuration, and both kinds of uninstall; then, on the emptied root, the
# province's server (--province): PostgreSQL, the database and its schema, the
# reader's password file, province.toml, the province web enabled and no gate
# unit, an upgrade that keeps them, and an uninstall that keeps the database.
#
# Not part of `make test`: it needs root, the debootstrap package and the
# Debian mirror, and takes minutes. Plain Debian has no Raspberry Pi
# archive, so this covers the V4L2 camera and simulated-pins path.
# deploy/test-install-arm64.sh runs it for arm64 under qemu-user.
#
#     sudo deploy/test-install.sh [--keep] [--base TARBALL] [--arch ARCH]
#                                 [--suite SUITE] [--cli]
#
#   --keep            leave the chroot in place and print where it is
#   --base TARBALL    reuse a debootstrapped base (made and saved there on the
#                     first run), which saves most of the time on later runs
#   --arch ARCH       Debian architecture of the root (default: this machine's);
#                     another one needs qemu-user-static and binfmt_misc
#   --suite SUITE     Debian release (default: bookworm)
#   --cli             also run the installed program: decode, check, replay,
#                     selftest, and run with a fake systemd notify socket
set -euo pipefail

keep=no
base=
arch=$(dpkg --print-architecture)
suite=bookworm
cli=no
while (($# > 0)); do
    case "$1" in
        --keep) keep=yes ;;
        --base)
            base=$2
            shift
            ;;
        --arch)
            arch=$2
            shift
            ;;
        --suite)
            suite=$2
            shift
            ;;
        --cli) cli=yes ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test-install: unknown option '$1'" >&2
            exit 2
            ;;
    esac
    shift
done

[[ $(id -u) -eq 0 ]] || {
    echo "test-install: run as root (debootstrap and chroot need it)" >&2
    exit 1
}
command -v debootstrap >/dev/null || {
    echo "test-install: needs debootstrap: apt-get install -y debootstrap" >&2
    exit 1
}

checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started_s=$SECONDS

# The mirror this machine's apt uses (deb822 or one-line format).
mirror=$(
    {
        grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
        grep -h '^deb ' /etc/apt/sources.list 2>/dev/null || true
    } | awk '{ print $2 }' | grep -v -e security -e '^$' | head -n 1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d "/var/tmp/gatekiosk-test-install-$arch-$suite.XXXXXX")
mounted=()

cleanup() {
    local i
    # A PostgreSQL left running in the root (the province case) holds its mounts.
    if [[ -x $root/usr/bin/pg_lsclusters ]]; then
        in_root pg_lsclusters --no-header 2>/dev/null | awk '$4 ~ /^online/ { print $1, $2 }' \
            | while read -r version name; do
                in_root pg_ctlcluster "$version" "$name" stop || true
            done
    fi
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[i]}" 2>/dev/null || true
    done
    if [[ $keep == yes ]]; then
        echo "test-install: kept the chroot at $root"
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT

step() {
    echo "test-install ($arch $suite): [$((SECONDS - started_s)) s] $*"
}

fail() {
    echo "test-install ($arch $suite): FAILED: $*" >&2
    exit 1
}

in_root() {
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# -- a Debian root ---------------------------------------------------------------

if [[ -n $base && -f $base ]]; then
    step "unpacking the base system from $base"
    tar -C "$root" -xzf "$base"
else
    step "debootstrap $suite ($arch) from $mirror into $root"
    debootstrap --arch="$arch" --variant=minbase --include=systemd,systemd-sysv,ca-certificates \
        "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
        || fail "debootstrap failed; see $root.debootstrap.log"
    rm -f "$root.debootstrap.log"
    if [[ -n $base ]]; then
        step "saving the base system to $base"
        tar -C "$root" -czf "$base" .
    fi
fi

chmod 0755 "$root" # it becomes /, which every user must be able to enter
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --rbind /dev "$root/dev" && mounted+=("$root/dev")
mount -t sysfs sysfs "$root/sys" && mounted+=("$root/sys")

# Trust what this machine trusts (a TLS-inspecting proxy's CA, as in some
# offices and CI), and use its pip settings (an index mirror).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null 2>&1
fi
if [[ -f /etc/pip.conf ]]; then
    cp /etc/pip.conf "$root/etc/pip.conf"
fi

step "copying the checkout to /src/gatekiosk"
mkdir -p "$root/src/gatekiosk"
tar -C "$checkout" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./demo-data --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.pytest_cache --exclude=.ruff_cache . \
    | tar -C "$root/src/gatekiosk" -xf -

# -- install -----------------------------------------------------------------

log=$root.install.log
install_in_root() {
    if ! in_root /src/gatekiosk/deploy/install.sh "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        fail "install.sh $* failed; the whole output is in $log"
    fi
}

step "install.sh --no-start (output in $log)"
install_in_root --no-start

step "checking the result"
in_root id gatekiosk | grep -q '(gpio)' || fail "gatekiosk is not in the gpio group"
in_root id gatekiosk | grep -q '(video)' || fail "gatekiosk is not in the video group"
[[ $(in_root getent passwd gatekiosk | cut -d: -f7) == /usr/sbin/nologin ]] \
    || fail "gatekiosk has a login shell"

expect_stat() { # path "owner:group mode"
    local got
    got=$(in_root stat -c '%U:%G %a' "$1")
    [[ $got == "$2" ]] || fail "$1 is $got, expected $2"
}
expect_stat /var/lib/gatekiosk "gatekiosk:gatekiosk 750"
expect_stat /etc/gatekiosk "root:gatekiosk 750"
expect_stat /etc/gatekiosk/gatekiosk.toml "root:gatekiosk 640"
expect_stat /opt/gatekiosk/bin/gatekiosk-backup "root:root 755"

conf=$root/etc/gatekiosk/gatekiosk.toml
grep -qx 'data_dir = "/var/lib/gatekiosk"' "$conf" || fail "gate.data_dir not set"
grep -qx 'source = "v4l2"' "$conf" || fail "camera.source is not v4l2 on plain Debian"
grep -qx 'backend = "mock"' "$conf" || fail "pins.backend is not mock on plain Debian"

for unit in gatekiosk-kiosk.service gatekiosk-web.service gatekiosk-maintenance.service \
    gatekiosk-maintenance.timer; do
    [[ -f $root/etc/systemd/system/$unit ]] || fail "$unit not installed"
done
[[ -L $root/etc/systemd/system/multi-user.target.wants/gatekiosk-kiosk.service ]] \
    || fail "gatekiosk-kiosk.service not enabled"
[[ -L $root/etc/systemd/system/multi-user.target.wants/gatekiosk-web.service ]] \
    || fail "gatekiosk-web.service not enabled"
[[ -L $root/etc/systemd/system/timers.target.wants/gatekiosk-maintenance.timer ]] \
    || fail "gatekiosk-maintenance.timer not enabled"
# The province's uplink: installed everywhere, enabled only with [uplink] settings.
[[ -f $root/etc/systemd/system/gatekiosk-uplink.service ]] || fail "gatekiosk-uplink not installed"
[[ ! -e $root/etc/systemd/system/multi-user.target.wants/gatekiosk-uplink.service ]] \
    || fail "gatekiosk-uplink.service enabled without [uplink] settings"

# The units against the real program, users and paths of this root.
verify=$(in_root systemd-analyze verify --man=no \
    /etc/systemd/system/gatekiosk-kiosk.service /etc/systemd/system/gatekiosk-web.service \
    /etc/systemd/system/gatekiosk-maintenance.service \
    /etc/systemd/system/gatekiosk-maintenance.timer \
    /etc/systemd/system/gatekiosk-uplink.service 2>&1 | grep gatekiosk || true)
[[ -z $verify ]] || fail "systemd-analyze verify: $verify"

numpy_file=$(in_root /opt/gatekiosk/venv/bin/python -c 'import numpy; print(numpy.__file__)')
[[ $numpy_file == /usr/lib/python3/dist-packages/* ]] || fail "the venv's numpy is $numpy_file"

as_gatekiosk() {
    chroot --userspec=gatekiosk:gatekiosk "$root" env -i PATH=/usr/bin:/bin \
        HOME=/var/lib/gatekiosk LANG=C.UTF-8 sh -c 'cd /var/lib/gatekiosk && exec "$@"' sh "$@"
}
as_gatekiosk /opt/gatekiosk/venv/bin/gatekiosk --version >/dev/null || fail "gatekiosk --version"
echo "a-long-test-password" | as_gatekiosk /opt/gatekiosk/venv/bin/gatekiosk user add tester \
    --role manager --password-stdin --config /etc/gatekiosk/gatekiosk.toml \
    || fail "gatekiosk user add"
[[ -f $root/var/lib/gatekiosk/keys/keys.json ]] || fail "no site keys made"
expect_stat /var/lib/gatekiosk/keys/private "gatekiosk:gatekiosk 700"
# What gatekiosk-maintenance.service runs, in its order.
as_gatekiosk /opt/gatekiosk/venv/bin/gatekiosk purge --config /etc/gatekiosk/gatekiosk.toml \
    || fail "gatekiosk purge"
as_gatekiosk /opt/gatekiosk/bin/gatekiosk-backup || fail "gatekiosk-backup"
ls "$root"/var/lib/gatekiosk/backup/gatekiosk-*.db >/dev/null || fail "no backup written"

# -- the installed program ---------------------------------------------------

# The commands a site runs first, as the service user, with the installed
# configuration: a code rendered into an image is decoded, checked, replayed
# through the whole pipeline, the self-test passes (but for the clock, never
# synchronised in a chroot), and `run` reports READY=1 and WATCHDOG=1 over a
# notify socket the way systemd's Type=notify and WatchdogSec= expect.
check_cli() {
    local work=/var/lib/gatekiosk/cli-test gk=/opt/gatekiosk/venv/bin/gatekiosk out
    local payload='079201000123||Nguyễn Văn An|15031990|Nam|Q1|01072021'
    in_root install -d -o gatekiosk -g gatekiosk "$work" "$work/recording"
    as_gatekiosk /opt/gatekiosk/venv/bin/python -c '
import sys
import segno
segno.make(sys.argv[1], error="m").save(sys.argv[2], scale=8, border=4)
' "$payload" "$work/recording/0001.png" || fail "segno could not render a code"

    out=$(as_gatekiosk "$gk" decode "$work/recording/0001.png") || fail "gatekiosk decode: $out"
    [[ $out == *"$payload"* ]] || fail "gatekiosk decode read: $out"
    out=$(as_gatekiosk "$gk" check --config "$CONF" --image "$work/recording/0001.png") \
        || fail "gatekiosk check: $out"
    [[ $out == "allow (in): ok [cccd]"* ]] || fail "gatekiosk check decided: $out"
    out=$(as_gatekiosk "$gk" replay --config "$CONF" "$work/recording") || fail "gatekiosk replay: $out"
    [[ $out == *'"decision": "allow"'*'"kind": "cccd"'* ]] || fail "gatekiosk replay: $out"

    out=$(as_gatekiosk env GATEKIOSK_CAMERA__SOURCE=synthetic \
        "$gk" selftest --config "$CONF" --yes --no-relay 2>&1) || true
    if grep -v '^✗ clock' <<<"$out" | grep -q '^✗' || ! grep -q '^✓ camera synthetic' <<<"$out"; then
        fail "gatekiosk selftest: $out"
    fi

    cat >"$root$work/notify.py" <<'PY'
"""Play systemd for `gatekiosk run`: a notify socket, READY=1, WATCHDOG=1, then SIGTERM."""
import os
import signal
import socket
import subprocess
import sys

path = os.path.join(os.getcwd(), "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(float(sys.argv[1]))
env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000",
       "GATEKIOSK_CAMERA__SOURCE": "synthetic"}
kiosk = subprocess.Popen(sys.argv[2:], env=env)
seen = []
try:
    while not {"READY=1", "WATCHDOG=1"} <= set(seen):
        seen += sock.recv(4096).decode().split("\n")
except TimeoutError:
    kiosk.kill()
    sys.exit(f"only {seen} from gatekiosk run within {sys.argv[1]} s")
kiosk.send_signal(signal.SIGTERM)
status = kiosk.wait(timeout=60)
print(f"run: {sorted(set(seen))}, exit status {status}")
sys.exit(status)
PY
    out=$(as_gatekiosk sh -c "cd $work && exec /opt/gatekiosk/venv/bin/python notify.py 300 $gk run --config $CONF" 2>&1) \
        || fail "gatekiosk run under a fake notify socket: $out"
    step "CLI: decode, check, replay, selftest and run passed (${out##*run: })"
}

readonly CONF=/etc/gatekiosk/gatekiosk.toml
if [[ $cli == yes ]]; then
    step "running the installed program (decode, check, replay, selftest, run)"
    check_cli
fi

# -- upgrade -------------------------------------------------------------------

step "install.sh --no-start --with-screen again (upgrade, and the gate screen)"
echo "# edited by the site" >>"$conf"
in_root useradd --create-home --uid 1000 pi
wayfire_ini=$root/home/pi/.config/wayfire.ini
mkdir -p "$(dirname "$wayfire_ini")"
printf '[core]\nplugins = autostart\n\n[autostart]\npanel = wf-panel-pi\n' >"$wayfire_ini"
in_root chown -R pi:pi /home/pi/.config
install_in_root --no-start --with-screen
# A hub pointed at its province (on this machine: no CA needed) gets its uplink.
sed -i -e 's/^host = ""$/host = "127.0.0.1"/' -e 's/^role = ""$/role = "site_test"/' "$conf"
install_in_root --no-start --with-screen
grep -qx "# edited by the site" "$conf" || fail "the upgrade overwrote the configuration"
[[ -L $root/etc/systemd/system/multi-user.target.wants/gatekiosk-uplink.service ]] \
    || fail "gatekiosk-uplink.service not enabled with [uplink] settings"
[[ -f $root/var/lib/gatekiosk/gatekiosk.db ]] || fail "the upgrade lost the database"
labwc_autostart=$root/home/pi/.config/labwc/autostart
[[ $(grep -c gatekiosk-screen "$labwc_autostart") == 1 ]] || fail "labwc autostart: not once"
[[ $(grep -c gatekiosk-screen "$wayfire_ini") == 1 ]] || fail "wayfire.ini: not once"
grep -A1 '^\[autostart\]' "$wayfire_ini" | grep -q gatekiosk-screen \
    || fail "wayfire.ini: not in [autostart]"
[[ $(in_root stat -c %U /home/pi/.config/labwc/autostart) == pi ]] \
    || fail "labwc autostart is not owned by pi"
in_root sh -c 'command -v chromium' >/dev/null || fail "chromium not installed"

# -- uninstall -----------------------------------------------------------------

step "install.sh --uninstall"
install_in_root --uninstall
[[ ! -e $root/opt/gatekiosk ]] || fail "/opt/gatekiosk is still there"
[[ ! -e $root/etc/systemd/system/gatekiosk-kiosk.service ]] || fail "the kiosk unit is still there"
[[ ! -e $root/etc/systemd/system/multi-user.target.wants/gatekiosk-kiosk.service ]] \
    || fail "the kiosk unit is still enabled"
[[ ! -e $root/etc/systemd/system/multi-user.target.wants/gatekiosk-uplink.service ]] \
    || fail "the uplink unit is still enabled"
[[ -f $root/var/lib/gatekiosk/gatekiosk.db && -f $conf ]] || fail "--uninstall removed data"
[[ ! -e $labwc_autostart ]] || fail "an emptied labwc autostart was left behind"
! grep -q gatekiosk-screen "$wayfire_ini" || fail "wayfire.ini still starts the screen"
grep -q '^panel = wf-panel-pi$' "$wayfire_ini" || fail "wayfire.ini lost its own entries"

step "install.sh --uninstall --purge-data"
install_in_root --uninstall --purge-data
[[ ! -e $root/var/lib/gatekiosk && ! -e $root/etc/gatekiosk ]] || fail "data left after --purge-data"
! in_root id gatekiosk >/dev/null 2>&1 || fail "the gatekiosk user is still there"

# -- the province's server ---------------------------------------------------------

step "install.sh --province --no-start (the province's server, on the emptied root)"
install_in_root --province --no-start
wants=$root/etc/systemd/system/multi-user.target.wants
province_conf=$root/etc/gatekiosk/province.toml
expect_stat /etc/gatekiosk/province.toml "root:gatekiosk 640"
expect_stat /etc/gatekiosk/province-web.pgpass "gatekiosk:gatekiosk 600"
grep -qx 'dsn = "host=localhost dbname=province user=province_web"' "$province_conf" \
    || fail "province.toml does not read the database as province_web"
grep -qE '^localhost:5432:province:province_web:[A-Za-z0-9_-]{40,}$' \
    "$root/etc/gatekiosk/province-web.pgpass" || fail "province-web.pgpass is not a pgpass line"
[[ ! -e $root/etc/gatekiosk/gatekiosk.toml ]] || fail "--province wrote a gate's configuration"
[[ -L $wants/gatekiosk-province-web.service ]] || fail "gatekiosk-province-web not enabled"
for unit in gatekiosk-kiosk.service gatekiosk-web.service gatekiosk-devices.service; do
    [[ ! -e $wants/$unit ]] || fail "$unit enabled on the province's server"
done
[[ ! -e $root/etc/systemd/system/timers.target.wants/gatekiosk-maintenance.timer ]] \
    || fail "gatekiosk-maintenance.timer enabled on the province's server"
verify=$(in_root systemd-analyze verify --man=no \
    /etc/systemd/system/gatekiosk-province-web.service 2>&1 | grep gatekiosk || true)
[[ -z $verify ]] || fail "systemd-analyze verify: $verify"

# The database, as PostgreSQL's superuser, with the cluster started for the look.
cluster=$(in_root pg_lsclusters --no-header | awk '$3 == 5432 { print $1, $2; exit }')
[[ -n $cluster ]] || fail "no PostgreSQL cluster on 5432"
read -r pg_version pg_name <<<"$cluster"
pg_started=no
if ! in_root pg_lsclusters --no-header | grep -q "^$pg_version *$pg_name .*online"; then
    in_root pg_ctlcluster "$pg_version" "$pg_name" start
    pg_started=yes
fi
province_sql() {
    in_root runuser -u postgres -- psql -X -q -t -A -d province -c "$1"
}
[[ $(province_sql "SELECT count(*) FROM pg_namespace WHERE nspname = 'province'") == 1 ]] \
    || fail "gatekiosk province init did not make the schema"
[[ $(province_sql "SELECT pg_has_role('province_web', 'province_reader', 'MEMBER')") == t ]] \
    || fail "province_web is not a province_reader"
province_sql "INSERT INTO province.sites (id, name, role_name) VALUES ('kept', 'Kept', 'site_kept')" \
    >/dev/null || fail "could not add a site"
if [[ $pg_started == yes ]]; then
    in_root pg_ctlcluster "$pg_version" "$pg_name" stop
fi

step "install.sh --province --no-start again (upgrade)"
pgpass_before=$(cat "$root/etc/gatekiosk/province-web.pgpass")
echo "# edited by the province" >>"$province_conf"
install_in_root --province --no-start
grep -qx "# edited by the province" "$province_conf" || fail "the upgrade overwrote province.toml"
[[ $(cat "$root/etc/gatekiosk/province-web.pgpass") == "$pgpass_before" ]] \
    || fail "the upgrade changed the reader's password"
grep -q "keeping the database province" "$log" || fail "the upgrade did not keep the database"
if in_root /src/gatekiosk/deploy/install.sh --no-start >>"$log" 2>&1; then
    fail "install.sh without --province upgraded the province's server as a gate"
fi

step "install.sh --uninstall (the province's server)"
install_in_root --uninstall
[[ ! -e $root/opt/gatekiosk ]] || fail "/opt/gatekiosk is still there"
[[ ! -e $wants/gatekiosk-province-web.service ]] || fail "the province web is still enabled"
in_root pg_ctlcluster "$pg_version" "$pg_name" start
[[ $(province_sql "SELECT name FROM province.sites WHERE id = 'kept'") == Kept ]] \
    || fail "--uninstall lost the province's database"
in_root pg_ctlcluster "$pg_version" "$pg_name" stop

rm -f "$log"
step "passed"
