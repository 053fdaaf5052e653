#!/bin/sh
# Prepare this machine for `make demo` and `make test`: the Debian packages
# gatekiosk needs, then a virtual environment with the project in it.
# With the argument "test", also what the tests need: Chromium for the
# browser tests (Debian's build; nothing is downloaded by the test tools).
# Installs system packages with apt when run as root or with password-less
# sudo; otherwise stops and prints the exact command to run.
set -eu

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# libzbar0: the zbar decoder backend. libgl1, libglib2.0-0: OpenCV's wheel
# links them. python3-venv: the venv module's pip bootstrap on Debian.
packages="libzbar0 libgl1 libglib2.0-0"
if [ "${1:-}" = "test" ]; then
    # chromium: browser tests; fonts-dejavu-core: Vietnamese glyphs in screenshots;
    # sqlite3: the benchmark compares exports with the shell's own, and the
    # backup script uses it; shellcheck, systemd: the deploy tests check the
    # scripts and verify the units; debootstrap: `make test-install`;
    # mosquitto: the site tests start a real broker (the hub's, Debian's build)
    # on a loopback port with a test CA; postgresql: the province tests make
    # a cluster with initdb in a temporary folder and start it on loopback.
    packages="$packages chromium fonts-dejavu-core sqlite3 shellcheck systemd debootstrap mosquitto"
    packages="$packages postgresql"
fi
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages="$packages python3-venv"
fi

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt_get="apt-get"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt_get="sudo apt-get"
    else
        echo "gatekiosk needs these Debian packages:$missing" >&2
        echo "Install them, then run make again:" >&2
        echo "    sudo apt-get install -y$missing" >&2
        exit 1
    fi
    echo "Installing Debian packages:$missing"
    DEBIAN_FRONTEND=noninteractive $apt_get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -q --no-install-recommends $missing
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
