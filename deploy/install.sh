#!/bin/bash
# Install gatekiosk on a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit) or
# on plain Debian 12, as systemd services. Run it again to upgrade: the
# program and the units are replaced, the configuration and the data never.
#
#     sudo deploy/install.sh                 install or upgrade, start the services
#     sudo deploy/install.sh --with-screen   also the gate screen (Chromium kiosk)
#     sudo deploy/install.sh --uninstall     remove the program and services, keep data
#     sudo deploy/install.sh --hub           also make this machine its site's hub
#     sudo deploy/install.sh --join HUB --token T --ca FP   join this gate to a site
#     sudo deploy/install.sh --province      the province's server instead of a gate
#
# What goes where:
#     /opt/gatekiosk/venv            the program (a Python virtual environment)
#     /opt/gatekiosk/bin             gatekiosk-backup, gatekiosk-screen, gatekiosk-wait-devices
#     /etc/gatekiosk/gatekiosk.toml  the configuration (written once, never overwritten)
#     /var/lib/gatekiosk             database, keys, backups (user gatekiosk, 0750)
#     /etc/systemd/system            gatekiosk-kiosk, gatekiosk-web, gatekiosk-maintenance,
#                                    gatekiosk-devices (the kiosk waits for its drivers);
#                                    on a hub gatekiosk-hub, gatekiosk-broker, and
#                                    gatekiosk-uplink when [uplink] is set (the province);
#                                    gatekiosk-province-web copied, enabled only by --province
#
# --province makes the province's server, not a gate: the same program and
# user, Debian's postgresql, the database "province" with its schema
# (`gatekiosk province init`, as the postgres user), a reader login for the
# web (its password generated once into /etc/gatekiosk/province-web.pgpass,
# gatekiosk 0600), /etc/gatekiosk/province.toml (written once) and
# gatekiosk-province-web enabled; no gate unit is enabled. Run again, it
# upgrades the program and the schema and keeps the configuration, the
# password and the database; --uninstall never drops the database.
#
# docs/hardware.md explains the wiring, the camera and the choices made here.
set -euo pipefail

readonly PREFIX=/opt/gatekiosk
readonly VENV=$PREFIX/venv
readonly CONF_DIR=/etc/gatekiosk
readonly CONF=$CONF_DIR/gatekiosk.toml
readonly DATA_DIR=/var/lib/gatekiosk
readonly UNIT_DIR=/etc/systemd/system
readonly UDEV_RULES=/etc/udev/rules.d/60-gatekiosk.rules
readonly SERVICE_USER=gatekiosk
readonly UNITS=(
    gatekiosk-devices.service
    gatekiosk-kiosk.service
    gatekiosk-web.service
    gatekiosk-maintenance.service
    gatekiosk-maintenance.timer
    gatekiosk-sync.service
    gatekiosk-hub.service
    gatekiosk-broker.service
    gatekiosk-uplink.service
    gatekiosk-province-web.service
)
# Where `gatekiosk site init` writes the hub's files, and the broker the hub reaches.
readonly SITE_DIR=$DATA_DIR/site
readonly HUB_BROKER=localhost:8883
# The line the screen autostart entries carry; uninstall removes lines holding it.
readonly SCREEN_COMMAND=$PREFIX/bin/gatekiosk-screen
# The province's server (--province): its database, the web's reader login and files.
readonly PROVINCE_DB=province
readonly PROVINCE_READER=province_web
readonly PROVINCE_CONF=$CONF_DIR/province.toml
readonly PROVINCE_PGPASS=$CONF_DIR/province-web.pgpass
readonly PROVINCE_WEB_UNIT=gatekiosk-province-web.service

usage() {
    cat <<'EOF'
Usage: sudo install.sh [OPTIONS]

Install or upgrade gatekiosk as systemd services (gatekiosk-kiosk,
gatekiosk-web, and a daily gatekiosk-maintenance timer). Running it again
upgrades the program; /etc/gatekiosk/gatekiosk.toml and /var/lib/gatekiosk
are never overwritten.

Options:
  --source DIR        project checkout to install from (default: the one
                      this script is in)
  --with-screen       also show the gate screen: Chromium in kiosk mode on
                      http://127.0.0.1:8080/display, started by the desktop
                      session (labwc, wayfire or LXDE)
  --screen-user NAME  desktop user for --with-screen (default: the user who
                      ran sudo, else the user with uid 1000)
  --simulated-pins    on a Raspberry Pi without lgpio, install anyway with
                      simulated pins (a test bench: the door never opens);
                      without it the installer refuses there
  --no-start          install and enable the units but start nothing (for a
                      chroot or an image being built)
  --uninstall         stop and remove the services and the program; keep the
                      configuration, the data and the gatekiosk user
  --purge-data        with --uninstall: also delete /etc/gatekiosk,
                      /var/lib/gatekiosk (database, keys, backups) and the user
  --print-config      print the configuration a first install would write on
                      this machine, and exit (no root needed)
  --hub               also make this machine the hub of a site: install
                      mosquitto, run `gatekiosk site init`, enable
                      gatekiosk-broker and gatekiosk-hub (Debian's own
                      mosquitto.service is disabled)
  --site ID           with --hub: the site's id (default: site)
  --host NAME         with --hub: a name or address gates reach the hub at
                      (repeat; default: this machine's first address and
                      its .local name)
  --join HUB          join this gate to the site whose hub is HUB, with
  --token T           the one-time token and
  --ca FINGERPRINT    the CA fingerprint shown on the hub's Gates page;
                      enables gatekiosk-sync
  --province          make this machine the province's server instead of a
                      gate: postgresql, the database "province" and its
                      schema, a reader login for the province web,
                      /etc/gatekiosk/province.toml, gatekiosk-province-web
                      enabled; no gate unit. Not with --hub, --join or
                      --with-screen. With --print-config: print the
                      province.toml a first install would write
  -h, --help          show this help

Example:
  sudo deploy/install.sh --with-screen
EOF
}

say() {
    echo "gatekiosk-install: $*"
}

warn() {
    echo "gatekiosk-install: warning: $*" >&2
}

die() {
    echo "gatekiosk-install: error: $*" >&2
    exit 1
}

# -- options -----------------------------------------------------------------

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
given_args=("$@")
source_dir=$(dirname "$script_dir")
action=install
with_screen=no
screen_user=
start=yes
purge_data=no
simulated_pins=no
site_role=
site_id=site
site_hosts=()
join_hub=
join_token=
join_ca=
province=no

while (($# > 0)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --source)
            (($# >= 2)) || die "--source needs a folder"
            source_dir=$2
            shift
            ;;
        --source=*) source_dir=${1#--source=} ;;
        --with-screen) with_screen=yes ;;
        --screen-user)
            (($# >= 2)) || die "--screen-user needs a user name"
            screen_user=$2
            shift
            ;;
        --screen-user=*) screen_user=${1#--screen-user=} ;;
        --no-start) start=no ;;
        --simulated-pins) simulated_pins=yes ;;
        --uninstall) action=uninstall ;;
        --purge-data) purge_data=yes ;;
        --print-config) action=print-config ;;
        --hub) site_role="hub" ;;
        --province) province=yes ;;
        --site | --host | --join | --token | --ca)
            (($# >= 2)) || die "$1 needs a value"
            case "$1" in
                --site) site_id=$2 ;;
                --host) site_hosts+=("$2") ;;
                --join)
                    site_role="join"
                    join_hub=$2
                    ;;
                --token) join_token=$2 ;;
                --ca) join_ca=$2 ;;
            esac
            shift
            ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

if [[ $action != uninstall ]]; then
    [[ -d $source_dir ]] || die "--source $source_dir: no such folder"
    source_dir=$(cd "$source_dir" && pwd)
fi
if [[ $purge_data == yes && $action != uninstall ]]; then
    die "--purge-data only goes with --uninstall"
fi
if [[ $site_role == join && (-z $join_token || -z $join_ca) ]]; then
    die "--join needs --token and --ca (both shown on the hub's Gates page)"
fi
if [[ $province == yes && (-n $site_role || $with_screen == yes) ]]; then
    die "--province makes the province's server, not a gate: it does not go with" \
        "--hub, --join or --with-screen"
fi

# systemd as PID 1? Not in a chroot, a container build or a rescue shell:
# there the units are installed and enabled but nothing is started.
systemd_running() {
    [[ -d /run/systemd/system ]]
}

# -- helpers -------------------------------------------------------------------

# True when apt can install PKG from a configured archive. python3-picamera2
# and python3-lgpio come from the Raspberry Pi archive, absent on plain Debian.
apt_has() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [[ -n $candidate && $candidate != "(none)" ]]
}

dpkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Run a command as the service user, from the data folder (lgpio and Python
# want a working directory they can read).
as_service_user() {
    (cd "$DATA_DIR" && runuser -u "$SERVICE_USER" -- env HOME="$DATA_DIR" "$@")
}

# Run a command as USER (the desktop user), from a folder every user can read.
as_user() {
    local user=$1
    shift
    (cd / && runuser -u "$user" -- "$@")
}

# The board's device-tree model ("Raspberry Pi 5 Model B Rev 1.0"), empty
# elsewhere. GATEKIOSK_MODEL_FILE names another file (tests).
board_model() {
    local file
    for file in ${GATEKIOSK_MODEL_FILE:-/proc/device-tree/model /sys/firmware/devicetree/base/model}; do
        if [[ -r $file ]]; then
            tr -d '\0' <"$file"
            return
        fi
    done
}

on_raspberry_pi() {
    [[ $(board_model) == *"Raspberry Pi"* ]]
}

# A Raspberry Pi whose pins are simulated is a gate whose door never opens,
# and it would look installed "successfully": refuse unless the site said
# --simulated-pins. PYTHON is the interpreter the kiosk will run.
check_gpio() {
    local python=$1
    on_raspberry_pi || return 0
    if [[ $simulated_pins == yes ]]; then
        warn "--simulated-pins: the lights, buzzer and door relay of this $(board_model)" \
            "are simulated; the door never opens"
        return 0
    fi
    "$python" -c 'import lgpio' 2>/dev/null \
        || die "this is a $(board_model), but $python cannot import lgpio, so the door relay" \
            "could never be switched. Install python3-lgpio (from the Raspberry Pi archive," \
            "in Raspberry Pi OS) and run install.sh again, or pass --simulated-pins for a" \
            "test bench whose door never opens."
}

# -- install steps -----------------------------------------------------------

install_packages() {
    say "updating apt's package lists"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    # python3-numpy: the one numpy the program uses (see install_program).
    # libzbar0: the zbar decoder. libgl1, libglib2.0-0: OpenCV's wheel links
    # them. sqlite3: gatekiosk-backup. python3-venv: venv with pip.
    local packages=(
        python3 python3-venv python3-numpy libzbar0 libgl1 libglib2.0-0
        sqlite3 ca-certificates
    )
    if [[ $province == yes ]]; then
        # The province's server: no camera, no pins; Debian's PostgreSQL.
        apt_has postgresql \
            || die "--province: the Debian package postgresql cannot be installed from the" \
                "configured archives (see 'apt-cache policy postgresql'); add Debian's main" \
                "archive to apt's sources and run install.sh --province again"
        packages+=(postgresql)
    else
        if apt_has python3-picamera2; then
            packages+=(python3-picamera2)
        else
            say "python3-picamera2 is not in the configured archives (not Raspberry Pi OS):" \
                "the camera will be a USB webcam (V4L2)"
        fi
        if apt_has python3-lgpio; then
            packages+=(python3-lgpio)
        else
            say "python3-lgpio is not in the configured archives: pins will be simulated" \
                "(on a Raspberry Pi only with --simulated-pins)"
        fi
    fi
    if [[ $with_screen == yes ]]; then
        packages+=(curl)
        if apt_has chromium; then
            packages+=(chromium)
        elif apt_has chromium-browser; then
            packages+=(chromium-browser)
        else
            die "--with-screen: neither chromium nor chromium-browser can be installed"
        fi
        if apt_has wlopm; then
            packages+=(wlopm)
        fi
    fi
    say "installing Debian packages: ${packages[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
}

install_user() {
    # Raspberry Pi OS has both groups; plain Debian has video but not gpio.
    local group
    for group in gpio video; do
        if ! getent group "$group" >/dev/null; then
            say "creating group $group"
            groupadd --system "$group"
        fi
    done
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        usermod --append --groups gpio,video "$SERVICE_USER"
    else
        say "creating system user $SERVICE_USER"
        useradd --system --user-group --groups gpio,video \
            --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "gatekiosk gate" "$SERVICE_USER"
    fi
}

install_udev_rules() {
    # Raspberry Pi OS's raspberrypi-sys-mods (99-com.rules) already gives the
    # gpio group /dev/gpiochip* and the video group /dev/dma_heap/*. Plain
    # Debian on a Pi does not: without these rules only root could drive the pins.
    if [[ -e /usr/lib/udev/rules.d/99-com.rules || -e /etc/udev/rules.d/99-com.rules ]]; then
        return
    fi
    say "installing $UDEV_RULES (gpio and video group access to GPIO and camera buffers)"
    install -d -m 0755 "$(dirname "$UDEV_RULES")"
    cat >"$UDEV_RULES" <<'EOF'
# Installed by gatekiosk's deploy/install.sh: the gatekiosk user (groups gpio
# and video) drives the GPIO pins and allocates camera buffers without root.
SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"
SUBSYSTEM=="dma_heap", GROUP="video", MODE="0660"
EOF
    if [[ $start == yes ]] && systemd_running && command -v udevadm >/dev/null; then
        udevadm control --reload
        udevadm trigger --subsystem-match=gpio --subsystem-match=dma_heap || true
    fi
}

install_folders() {
    install -d -m 0755 -o root -g root "$PREFIX" "$PREFIX/bin" "$PREFIX/docs"
    install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
    install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
    # Keep 0750 and the owner on upgrades even if someone changed them.
    chown "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR"
    chmod 0750 "$DATA_DIR"
}

# One numpy, apt's: Raspberry Pi OS's python3-picamera2 is built against
# python3-numpy, and a venv with --system-site-packages would otherwise get
# numpy 2 from pip with the newest opencv-python, breaking `import picamera2`.
# pip runs with a constraint pinning numpy to apt's version, so its resolver
# picks the newest OpenCV that accepts it, or stops. The whole argument, and
# what was not chosen: docs/hardware.md, "numpy and picamera2".
install_program() {
    [[ -f $source_dir/pyproject.toml && -f $source_dir/deploy/gatekiosk.toml ]] ||
        die "$source_dir is not a gatekiosk checkout (no pyproject.toml or deploy/gatekiosk.toml); use --source DIR"

    local numpy_version numpy_file
    numpy_file=$(/usr/bin/python3 -s -c 'import numpy; print(numpy.__file__)')
    numpy_version=$(/usr/bin/python3 -s -c 'import numpy; print(numpy.__version__)')
    [[ $numpy_file == /usr/lib/python3/dist-packages/* ]] ||
        die "the system Python imports numpy from $numpy_file, not from apt's python3-numpy; remove that copy (pip uninstall numpy) and run again"

    local system_python venv_python=""
    system_python=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [[ -x $VENV/bin/python ]]; then
        venv_python=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    fi
    if [[ $venv_python != "$system_python" ]] \
        || ! grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg" 2>/dev/null; then
        say "creating $VENV (Python $system_python, with the system's site packages)"
        rm -rf "$VENV"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
    fi
    # A numpy that someone pip-installed into the venv would shadow apt's.
    if compgen -G "$VENV/lib/python3*/site-packages/numpy" >/dev/null; then
        say "removing the venv's own numpy (apt's python3-numpy is the one to use)"
        "$VENV/bin/python" -m pip uninstall --yes --quiet numpy
    fi

    cat >"$PREFIX/constraints.txt" <<EOF
# Written by gatekiosk's install.sh: apt's python3-numpy is the only numpy,
# the one python3-picamera2 was built against. See docs/hardware.md.
numpy==$numpy_version
EOF

    # Build from a copy: pip builds in the source tree, and root-owned build
    # files would be left in the user's checkout.
    local build_dir
    build_dir=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: build_dir is local
    trap "rm -rf '$build_dir'" EXIT
    tar -C "$source_dir" -cf - \
        --exclude=./.git --exclude=./.venv --exclude=./demo-data --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.pytest_cache --exclude=.ruff_cache --exclude=node_modules . \
        | tar -C "$build_dir" -xf -

    say "installing gatekiosk into $VENV (numpy pinned to apt's $numpy_version)"
    "$VENV/bin/python" -m pip install --quiet --upgrade --upgrade-strategy only-if-needed \
        --constraint "$PREFIX/constraints.txt" "$build_dir"
    rm -rf "$build_dir"
    trap - EXIT

    # Fail now, not at the first scan, if the environment is not what it should be.
    "$VENV/bin/python" - <<'EOF'
import sys

import cv2
import numpy
import zxingcpp  # noqa: F401

if not numpy.__file__.startswith("/usr/lib/python3/dist-packages/"):
    sys.exit(f"gatekiosk-install: error: the venv imports numpy from {numpy.__file__}, not apt's")
print(f"gatekiosk-install: numpy {numpy.__version__} (apt), OpenCV {cv2.__version__}")
EOF
    if dpkg_installed python3-picamera2; then
        "$VENV/bin/python" -c 'import picamera2' \
            || die "the venv cannot import apt's picamera2 (see the error above)"
        say "picamera2 imports in the venv"
    fi
}

install_files() {
    install -m 0755 "$source_dir/deploy/gatekiosk-backup.sh" "$PREFIX/bin/gatekiosk-backup"
    install -m 0755 "$source_dir/deploy/gatekiosk-screen.sh" "$PREFIX/bin/gatekiosk-screen"
    install -m 0755 "$source_dir/deploy/gatekiosk-screen-setup.sh" "$PREFIX/bin/gatekiosk-screen-setup"
    install -m 0755 "$source_dir/deploy/gatekiosk-wait-devices.sh" "$PREFIX/bin/gatekiosk-wait-devices"
    if [[ -f $source_dir/docs/hardware.md ]]; then
        install -m 0644 "$source_dir/docs/hardware.md" "$PREFIX/docs/hardware.md"
    fi
    local unit
    for unit in "${UNITS[@]}"; do
        install -m 0644 "$source_dir/deploy/$unit" "$UNIT_DIR/$unit"
    done
    say "installed the units into $UNIT_DIR (change them with 'systemctl edit', not in place:" \
        "an upgrade replaces them)"
}

# The shipped example with this machine's choices: data folder, camera, pins.
write_config() {
    local target=$1 camera device=0 pins=auto detected why_camera
    detected=$(bash "$source_dir/deploy/gatekiosk-detect-camera.sh")
    camera=${detected%%$'\t'*}
    case $camera in
        picamera2)
            why_camera="a Camera Module is attached (libcamera)"
            dpkg_installed python3-picamera2 \
                || warn "a Camera Module is attached but python3-picamera2 is not installed" \
                    "(it comes from the Raspberry Pi archive); the kiosk cannot open it until it is"
            ;;
        v4l2)
            device=${detected#*$'\t'}
            why_camera="a USB webcam is attached ($device)"
            ;;
        *)
            # Nothing attached yet (an image being built, a camera still in its box):
            # the Camera Module where libcamera is installed, else a webcam.
            if dpkg_installed python3-picamera2; then
                camera=picamera2
            else
                camera=v4l2
            fi
            why_camera="no camera was found when this was written (docs/hardware.md, Camera)"
            ;;
    esac
    if [[ $simulated_pins == yes ]] || { ! on_raspberry_pi && ! dpkg_installed python3-lgpio; }; then
        pins=mock
    fi
    {
        echo "# Written by gatekiosk's install.sh on $(date +%F): gate.data_dir, camera.source,"
        echo "# camera.device and pins.backend set for this machine."
        echo "# camera.source is \"$camera\": $why_camera."
        if [[ $pins == mock && $simulated_pins == yes ]]; then
            echo "# pins.backend is \"mock\" because install.sh was given --simulated-pins: the"
            echo "# lights, buzzer and door relay are simulated and THE DOOR NEVER OPENS."
        elif [[ $pins == mock ]]; then
            echo "# pins.backend is \"mock\": lgpio is not installed (not Raspberry Pi OS), so the"
            echo "# lights, buzzer and door relay are simulated. On a Raspberry Pi with lgpio"
            echo "# (apt-get install python3-lgpio) set it to \"auto\" and restart gatekiosk-kiosk."
        fi
        echo
        sed -e 's|^data_dir = "gatekiosk-data"$|data_dir = "/var/lib/gatekiosk"|' \
            -e "s|^source = \"v4l2\"\$|source = \"$camera\"|" \
            -e "s|^device = \"0\"\$|device = \"$device\"|" \
            -e "s|^backend = \"auto\"\$|backend = \"$pins\"|" \
            "$source_dir/deploy/gatekiosk.toml"
    } >"$target"
    if ! grep -qx 'data_dir = "/var/lib/gatekiosk"' "$target" \
        || ! grep -qx "source = \"$camera\"" "$target" \
        || ! grep -qx "device = \"$device\"" "$target" \
        || ! grep -qx "backend = \"$pins\"" "$target"; then
        die "deploy/gatekiosk.toml no longer has the lines install.sh edits" \
            "(gate.data_dir, camera.source, camera.device, pins.backend); update write_config"
    fi
}

install_config() {
    # The example for this release, to compare with after an upgrade.
    write_config "$CONF_DIR/gatekiosk.toml.example"
    chmod 0644 "$CONF_DIR/gatekiosk.toml.example"
    if [[ -e $CONF ]]; then
        say "keeping $CONF (compare with $CONF_DIR/gatekiosk.toml.example for new settings)"
    else
        say "writing $CONF"
        install -m 0640 -o root -g "$SERVICE_USER" "$CONF_DIR/gatekiosk.toml.example" "$CONF"
    fi
    # Owned by root (the services cannot change it), readable by the group
    # (web.display_token is a secret).
    chown "root:$SERVICE_USER" "$CONF"
    chmod 0640 "$CONF"
    check_config "$CONF"
}

# Stop here, naming every problem, if the service user cannot load FILE.
check_config() {
    as_service_user "$VENV/bin/python" -c '
import sys
from pathlib import Path

from kiosk.config import load_settings
from kiosk.errors import GateError

try:
    load_settings(Path(sys.argv[1]))
except GateError as exc:
    sys.exit(f"gatekiosk-install: error: {exc}")
' "$1" || die "$1 is not valid (see above)"
}

install_keys() {
    if ! "$VENV/bin/gatekiosk" keys --help >/dev/null 2>&1; then
        warn "this version has no 'gatekiosk keys' command yet, so no site keys were made;" \
            "after an upgrade that has it, run: sudo -u $SERVICE_USER $VENV/bin/gatekiosk keys init --config $CONF"
        return
    fi
    if [[ -e $DATA_DIR/keys/keys.json ]]; then
        say "site keys exist in $DATA_DIR/keys"
        return
    fi
    say "creating the site keys in $DATA_DIR/keys"
    as_service_user "$VENV/bin/gatekiosk" keys init --config "$CONF"
}

install_services() {
    if ! command -v systemctl >/dev/null; then
        warn "systemctl is missing: the units are in $UNIT_DIR but not enabled"
        return
    fi
    if [[ $start == yes ]] && ! systemd_running; then
        warn "systemd is not running here (chroot or container): enabling, not starting"
        start=no
    fi
    if [[ $start == yes ]]; then
        systemctl daemon-reload
    fi
    systemctl enable gatekiosk-kiosk.service gatekiosk-web.service gatekiosk-maintenance.timer
    if [[ $start == yes ]]; then
        # --no-block: the kiosk reports ready (Type=notify) only once its
        # camera is open; the installer does not wait for that.
        systemctl restart --no-block gatekiosk-kiosk.service gatekiosk-web.service
        systemctl restart gatekiosk-maintenance.timer
        say "started gatekiosk-kiosk and gatekiosk-web; check with:" \
            "systemctl status gatekiosk-kiosk gatekiosk-web"
    else
        say "enabled the services; they start at the next boot"
    fi
}

# The desktop user whose session shows the gate screen.
find_screen_user() {
    if [[ -n $screen_user ]]; then
        echo "$screen_user"
    elif [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        echo "$SUDO_USER"
    else
        getent passwd 1000 | cut -d: -f1
    fi
}

install_screen() {
    local user home
    user=$(find_screen_user)
    if [[ -z $user ]] || ! id -u "$user" >/dev/null 2>&1; then
        die "--with-screen: no desktop user found; name one with --screen-user NAME"
    fi
    home=$(getent passwd "$user" | cut -d: -f6)
    [[ -d $home ]] || die "--with-screen: $user has no home folder ($home)"

    # The autostart entries and no blanking, in $user's own files, for every
    # desktop Raspberry Pi OS has had (see gatekiosk-screen-setup). Not
    # raspi-config: it edits SUDO_USER's files and picks the X11 branch when
    # no labwc runs yet, which is the case over SSH before the first login.
    as_user "$user" env HOME="$home" "$PREFIX/bin/gatekiosk-screen-setup" add "$home" \
        || die "--with-screen: could not set up $user's desktop session (see above)"
    say "gate screen: log in as $user on the desktop (or turn on desktop autologin" \
        "for $user: autologin-user=$user in /etc/lightdm/lightdm.conf) and Chromium" \
        "shows http://127.0.0.1:8080/display"
}

print_next_steps() {
    cat <<EOF

gatekiosk is installed.
  configuration  $CONF
  data           $DATA_DIR
  logs           journalctl -u gatekiosk-kiosk -u gatekiosk-web

Create the first manager account (the password is asked for):
  sudo -u $SERVICE_USER $VENV/bin/gatekiosk user add NAME --role manager --config $CONF

Then open http://127.0.0.1:8080/ on this machine (for other machines, set
web.host in $CONF and restart gatekiosk-web).
EOF
}

do_install() {
    check_machine_kind
    install_packages
    check_gpio /usr/bin/python3
    install_user
    install_udev_rules
    install_folders
    install_program
    check_gpio "$VENV/bin/python"
    install_files
    install_config
    install_keys
    install_services
    if [[ $with_screen == yes ]]; then
        install_screen
    fi
    case $site_role in
        hub) install_hub ;;
        join) install_join ;;
    esac
    install_uplink
    print_next_steps
}

# -- a site: the hub, or a gate joining it ------------------------------------

# Rewrite the configuration as the service user may (it cannot write /etc):
# "$@" runs with a private copy as --config, which then replaces the original.
with_config_copy() {
    local copy
    copy=$(mktemp)
    install -m 0640 -o "$SERVICE_USER" -g "$SERVICE_USER" "$CONF" "$copy"
    if ! as_service_user "$@" --config "$copy"; then
        rm -f "$copy"
        return 1
    fi
    install -m 0640 -o root -g "$SERVICE_USER" "$copy" "$CONF"
    rm -f "$copy"
}

install_hub() {
    if ! dpkg_installed mosquitto; then
        say "installing mosquitto (the site's broker)"
        apt-get install -y --no-install-recommends mosquitto
    fi
    # Debian's broker listens without TLS on 1883: the site's own replaces it.
    if command -v systemctl >/dev/null; then
        systemctl disable --now mosquitto.service 2>/dev/null || true
    fi
    if ((${#site_hosts[@]} == 0)); then
        local address
        address=$(hostname -I 2>/dev/null | awk '{print $1}')
        if [[ -n $address ]]; then
            site_hosts+=("$address")
        fi
        site_hosts+=("$(hostname -s).local")
    fi
    local args=(site init --site "$site_id") host
    for host in "${site_hosts[@]}" localhost; do
        args+=(--host "$host")
    done
    as_service_user "$VENV/bin/gatekiosk" "${args[@]}" --config "$CONF"
    # The hub's own process reaches the broker on this machine.
    with_config_copy "$VENV/bin/python" -c '
import sys
from pathlib import Path

from kiosk.site.join import write_site_settings

write_site_settings(Path(sys.argv[-1]), hub=sys.argv[1], folder=Path(sys.argv[2]))
' "$HUB_BROKER" "$SITE_DIR"
    enable_site_units gatekiosk-broker.service gatekiosk-hub.service
    say "this machine is the hub of site $site_id; add gates from the web's Gates page"
}

install_join() {
    say "joining the site of $join_hub"
    with_config_copy "$VENV/bin/gatekiosk" site join "$join_hub" \
        --token "$join_token" --ca "$join_ca"
    enable_site_units gatekiosk-sync.service
    say "joined; this gate's settings, denylist and trust list now come from the hub"
}

# The province: gatekiosk-uplink is enabled only where the configuration has
# [uplink] settings (uplink.host or uplink.dsn); they are checked first, as
# the service user, so a missing CA or password file is named now. Without
# them a unit enabled before is disabled (it would only fail and restart).
install_uplink() {
    local status=0
    as_service_user "$VENV/bin/python" -c '
import sys
from pathlib import Path

from kiosk.config import load_settings
from kiosk.errors import GateError
from kiosk.province.target import uplink_configured, uplink_target

settings = load_settings(Path(sys.argv[1]))
if not uplink_configured(settings.values):
    sys.exit(3)
try:
    print(f"gatekiosk-install: uplink to {uplink_target(settings.values).shown}")
except GateError as exc:
    sys.exit(f"gatekiosk-install: error: {exc}")
' "$CONF" || status=$?
    case $status in
        0) ;;
        3)
            if command -v systemctl >/dev/null \
                && systemctl is-enabled --quiet gatekiosk-uplink.service 2>/dev/null; then
                systemctl disable gatekiosk-uplink.service
                if [[ $start == yes ]]; then
                    systemctl stop gatekiosk-uplink.service || true
                fi
                say "no [uplink] settings in $CONF: disabled gatekiosk-uplink"
            fi
            return
            ;;
        *) die "the [uplink] settings in $CONF are not usable (see above)" ;;
    esac
    if ! command -v systemctl >/dev/null; then
        warn "systemctl is missing: enable gatekiosk-uplink.service yourself"
        return
    fi
    systemctl enable gatekiosk-uplink.service
    if [[ $start == yes ]]; then
        systemctl restart --no-block gatekiosk-uplink.service
    fi
    say "uploading to the province: enabled gatekiosk-uplink"
}

# Enable the units named; with --start, also (re)start them and the kiosk and
# web, which read the site's hash key at start.
enable_site_units() {
    if ! command -v systemctl >/dev/null; then
        warn "systemctl is missing: enable $* yourself"
        return
    fi
    systemctl enable "$@"
    if [[ $start == yes ]]; then
        systemctl restart --no-block "$@" gatekiosk-kiosk.service gatekiosk-web.service
    fi
}

# -- the province's server (--province) ------------------------------------------

# A gate and the province's server are machines of their own: both webs
# would listen on 8080 and keep their accounts in the same $DATA_DIR. So an
# install of one kind refuses a machine installed as the other.
check_machine_kind() {
    if [[ $province == yes && -e $CONF ]]; then
        die "--province: this machine is a gate or a hub ($CONF exists); the province's" \
            "server is a machine of its own (the province web and the gate's web would share" \
            "port 8080 and $DATA_DIR). Install it on another machine."
    fi
    if [[ $province == no && -e $PROVINCE_CONF && ! -e $CONF ]]; then
        die "this machine is the province's server ($PROVINCE_CONF exists, $CONF does not):" \
            "upgrade it with: sudo $0 --province"
    fi
}

# Run a command as PostgreSQL's superuser (peer authentication over the
# local socket), from a folder it can read.
as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

# One value from PostgreSQL, as its superuser: psql -c SQL, unaligned.
postgres_value() {
    as_postgres psql -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"
}

# The cluster libpq reaches without a port (5432, Debian's socket folder),
# as "VERSION NAME STATUS"; empty when there is none.
province_cluster() {
    pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 { print $1, $2, $4; exit }'
}

# The database, its schema, and the reader login. A cluster found stopped
# (a chroot, --no-start, or stopped by hand) is started for the setup and
# stopped again unless services are being started.
install_province_database() {
    local cluster version name status stop_after=no
    cluster=$(province_cluster)
    [[ -n $cluster ]] \
        || die "--province: no PostgreSQL cluster on port 5432 (pg_lsclusters); make one with" \
            "'sudo pg_createcluster --start VERSION main' and run install.sh --province again"
    read -r version name status <<<"$cluster"
    if [[ $status != online* ]]; then
        say "starting PostgreSQL $version/$name for the setup"
        pg_ctlcluster "$version" "$name" start
        if [[ $start == no ]] || ! systemd_running; then
            stop_after=yes
            # shellcheck disable=SC2064  # expand now: version and name are local
            trap "pg_ctlcluster '$version' '$name' stop || true" EXIT
        fi
    fi
    if [[ -z $(postgres_value "SELECT 1 FROM pg_database WHERE datname = '$PROVINCE_DB'") ]]; then
        say "creating the database $PROVINCE_DB (PostgreSQL $version/$name)"
        as_postgres createdb "$PROVINCE_DB"
    else
        say "keeping the database $PROVINCE_DB (PostgreSQL $version/$name)"
    fi
    say "gatekiosk province init: the schema, roles and policies (an upgrade updates them)"
    as_postgres "$VENV/bin/gatekiosk" province init "dbname=$PROVINCE_DB"
    install_province_reader
    if [[ $stop_after == yes ]]; then
        pg_ctlcluster "$version" "$name" stop
        trap - EXIT
        say "stopped PostgreSQL $version/$name again"
    fi
}

# The web's login in province_reader. Its password is made once, here, and
# lives only in PROVINCE_PGPASS (libpq's format, host:port:database:user:
# password; gatekiosk 0600, or libpq ignores it): an upgrade keeps the file
# and the role; a role missing (a database restored) is made again with the
# file's password, a file missing gets a new password set on the role.
install_province_reader() {
    local role_exists password=
    role_exists=$(postgres_value "SELECT 1 FROM pg_roles WHERE rolname = '$PROVINCE_READER'")
    if [[ -e $PROVINCE_PGPASS ]]; then
        say "keeping $PROVINCE_PGPASS (the password of $PROVINCE_READER)"
        if [[ -z $role_exists ]]; then
            password=$(awk -F: -v db="$PROVINCE_DB" -v user="$PROVINCE_READER" \
                '$3 == db && $4 == user { print $5; exit }' "$PROVINCE_PGPASS")
            [[ -n $password ]] \
                || die "$PROVINCE_PGPASS has no line for $PROVINCE_DB and $PROVINCE_READER;" \
                    "remove it and run install.sh --province again for a new password"
        fi
    else
        say "writing $PROVINCE_PGPASS: a new password for $PROVINCE_READER"
        # URL-safe base64: no ':' or '\' to escape in a pgpass line or in SQL.
        password=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')
        (umask 077 && printf 'localhost:5432:%s:%s:%s\n' \
            "$PROVINCE_DB" "$PROVINCE_READER" "$password" >"$PROVINCE_PGPASS")
        if [[ -n $role_exists ]]; then
            printf "ALTER ROLE %s PASSWORD '%s';\n" "$PROVINCE_READER" "$password" \
                | as_postgres psql -X -q -v ON_ERROR_STOP=1 -d "$PROVINCE_DB" >/dev/null
            say "set the new password on the existing role $PROVINCE_READER"
        fi
    fi
    chown "$SERVICE_USER:$SERVICE_USER" "$PROVINCE_PGPASS"
    chmod 0600 "$PROVINCE_PGPASS"
    if [[ -z $role_exists ]]; then
        printf '%s\n' "$password" | as_postgres "$VENV/bin/gatekiosk" province add-reader \
            "dbname=$PROVINCE_DB" "$PROVINCE_READER" --password-stdin
    fi
}

# What the province web reads; every setting not here keeps its default
# (deploy/gatekiosk.toml lists them all with their help).
write_province_config() {
    cat >"$1" <<EOF
# Written by gatekiosk's install.sh --province on $(date +%F): the province web
# (gatekiosk-province-web). Settings not here keep their defaults; the whole
# list, with help, is deploy/gatekiosk.toml in the source. docs/province.md
# explains the server.

[gate]
# The province web's own accounts (gatekiosk user add) and session key.
data_dir = "$DATA_DIR"
# Times on the pages are shown in this zone.
timezone = "Asia/Ho_Chi_Minh"

[web]
# This machine only. Serve it to others over HTTPS through a proxy here
# (docs/province.md), then set cookie_secure = true and
# trusted_proxy = "127.0.0.1" and restart gatekiosk-province-web.
host = "127.0.0.1"
port = 8080
cookie_secure = false
trusted_proxy = ""

[province_web]
# The reader login install.sh made; its password is in $PROVINCE_PGPASS
# (PGPASSFILE in the unit), never here.
dsn = "host=localhost dbname=$PROVINCE_DB user=$PROVINCE_READER"
# The longest window of one site's entries one export may cover, in days.
export_max_days = 31
EOF
}

install_province_config() {
    write_province_config "$PROVINCE_CONF.example"
    chmod 0644 "$PROVINCE_CONF.example"
    if [[ -e $PROVINCE_CONF ]]; then
        say "keeping $PROVINCE_CONF (compare with $PROVINCE_CONF.example for new settings)"
    else
        say "writing $PROVINCE_CONF"
        install -m 0640 -o root -g "$SERVICE_USER" "$PROVINCE_CONF.example" "$PROVINCE_CONF"
    fi
    chown "root:$SERVICE_USER" "$PROVINCE_CONF"
    chmod 0640 "$PROVINCE_CONF"
    check_config "$PROVINCE_CONF"
    # The checklist to publish and the server's guide, beside the program.
    install -m 0644 "$source_dir/deploy/province-checklist.toml" "$PREFIX/docs/province-checklist.toml"
    install -m 0644 "$source_dir/docs/province.md" "$PREFIX/docs/province.md"
}

install_province_web() {
    if ! command -v systemctl >/dev/null; then
        warn "systemctl is missing: enable postgresql.service and $PROVINCE_WEB_UNIT yourself"
        return
    fi
    if [[ $start == yes ]] && ! systemd_running; then
        warn "systemd is not running here (chroot or container): enabling, not starting"
        start=no
    fi
    local unit
    for unit in gatekiosk-kiosk.service gatekiosk-web.service gatekiosk-maintenance.timer; do
        if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
            warn "$unit is enabled on this province server; disable it:" \
                "sudo systemctl disable --now $unit"
        fi
    done
    if [[ $start == yes ]]; then
        systemctl daemon-reload
    fi
    systemctl enable postgresql.service "$PROVINCE_WEB_UNIT"
    if [[ $start == yes ]]; then
        systemctl start postgresql.service
        systemctl restart "$PROVINCE_WEB_UNIT"
        say "started $PROVINCE_WEB_UNIT; check with: systemctl status gatekiosk-province-web"
    else
        say "enabled $PROVINCE_WEB_UNIT; it starts at the next boot"
    fi
}

print_province_next_steps() {
    local gk=$VENV/bin/gatekiosk
    cat <<EOF

Đã cài máy chủ cấp tỉnh. / The province server is installed.
  cơ sở dữ liệu / database   PostgreSQL "$PROVINCE_DB" (sudo -u postgres psql $PROVINCE_DB)
  cấu hình / configuration   $PROVINCE_CONF
  mật khẩu đọc / reader      $PROVINCE_PGPASS (login $PROVINCE_READER)
  nhật ký / logs             journalctl -u gatekiosk-province-web

Việc tiếp theo / What to do next:

1. Tạo tài khoản quản lý trang cấp tỉnh (sẽ hỏi mật khẩu) /
   Create a manager of the province web (the password is asked for):
     sudo -u $SERVICE_USER $gk user add NAME --role manager --config $PROVINCE_CONF

2. Thêm từng khu; mật khẩu của khu đọc từ stdin, hub của khu dùng nó trong uplink.password_file /
   Add each site; its password is read from stdin, its hub keeps it in uplink.password_file:
     sudo -u postgres $gk province add-site "dbname=$PROVINCE_DB" market-3 --name "Chợ 3" --password-stdin

3. Công bố bảng tự đánh giá (sửa một bản sao trước) /
   Publish the self-assessment checklist (edit a copy first):
     cp $PREFIX/docs/province-checklist.toml /tmp/checklist.toml
     sudo -u postgres $gk province checklist "dbname=$PROVINCE_DB" /tmp/checklist.toml

4. Bật TLS trước khi các hub kết nối: ssl = on và chứng chỉ trong postgresql.conf, hostssl
   trong pg_hba.conf /
   Turn TLS on before hubs connect: ssl = on and the certificate in postgresql.conf,
   hostssl in pg_hba.conf: $PREFIX/docs/province.md, "The province server".

Trang cấp tỉnh: http://127.0.0.1:8080/ trên máy này; máy khác qua HTTPS với một proxy /
The province web: http://127.0.0.1:8080/ on this machine; to others over HTTPS through a
proxy ($PREFIX/docs/province.md, "The province web").
EOF
}

do_install_province() {
    check_machine_kind
    install_packages
    install_user
    install_folders
    install_program
    install_files
    install_province_database
    install_province_config
    install_province_web
    print_province_next_steps
}

# -- uninstall -----------------------------------------------------------------

do_uninstall() {
    local unit was_province=no
    if [[ $province == yes || -e $PROVINCE_CONF ]]; then
        was_province=yes
    fi
    if command -v systemctl >/dev/null; then
        if systemd_running; then
            systemctl disable --now "${UNITS[@]}" || true
        else
            systemctl disable "${UNITS[@]}" || true
        fi
    fi
    for unit in "${UNITS[@]}"; do
        rm -f "$UNIT_DIR/$unit"
    done
    if systemd_running; then
        systemctl daemon-reload
    fi
    local home
    for home in /home/*; do
        if [[ -d $home && -x $PREFIX/bin/gatekiosk-screen-setup ]] \
            && grep -rqsF "$SCREEN_COMMAND" "$home/.config"; then
            as_user "$(stat -c %U "$home")" env HOME="$home" \
                "$PREFIX/bin/gatekiosk-screen-setup" remove "$home" || true
        fi
    done
    rm -f "$UDEV_RULES"
    rm -rf "$PREFIX"
    say "removed the services and $PREFIX"
    if [[ $purge_data == yes ]]; then
        rm -rf "$DATA_DIR" "$CONF_DIR"
        if id -u "$SERVICE_USER" >/dev/null 2>&1; then
            userdel "$SERVICE_USER"
        fi
        say "deleted $DATA_DIR, $CONF_DIR and the user $SERVICE_USER"
    else
        say "kept $CONF_DIR, $DATA_DIR (database, keys, backups) and the user $SERVICE_USER;" \
            "--uninstall --purge-data deletes them"
    fi
    if [[ $was_province == yes ]]; then
        say "kept the province's PostgreSQL database $PROVINCE_DB (sites, events, audit) and" \
            "the role $PROVINCE_READER: removing gatekiosk never drops them; by hand only:" \
            "sudo -u postgres dropdb $PROVINCE_DB"
    fi
}

print_config() {
    local printed
    printed=$(mktemp)
    # shellcheck disable=SC2064  # expand now: printed is local
    trap "rm -f '$printed'" EXIT
    if [[ $province == yes ]]; then
        write_province_config "$printed"
    else
        check_gpio "${GATEKIOSK_SYSTEM_PYTHON:-/usr/bin/python3}"
        write_config "$printed"
    fi
    cat "$printed"
}

if [[ $action == print-config ]]; then
    print_config
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    die "run as root, for example: sudo $0 ${given_args[*]}"
fi
if [[ $action == uninstall ]]; then
    do_uninstall
elif [[ $province == yes ]]; then
    do_install_province
else
    do_install
fi
