#!/bin/bash
# The installer on arm64, the Raspberry Pi's architecture, under emulation:
# for Debian 12 (bookworm, Python 3.11) and Debian 13 (trixie, Python 3.13)
# it debootstraps an arm64 root, runs install.sh inside it, and runs the
# installed program there: decode, check, replay, selftest, and `run` with a
# fake systemd notify socket (READY=1, WATCHDOG=1). It is deploy/test-install.sh
# with --arch arm64 --suite SUITE --cli, once per suite; every check of that
# script applies.
#
# What this covers: aarch64 wheels of every dependency (OpenCV, zxing-cpp,
# cryptography...) installing against Debian's own numpy, the units, the
# configuration, the CLI, on the same Debian the Pi's OS is built from.
#
# What it does not: Debian's archive, not the Raspberry Pi archive
# (archive.raspberrypi.com), is used, so python3-picamera2, libcamera (and
# rpicam-apps) and python3-lgpio are absent: the camera is configured as a
# V4L2 webcam and the pins are simulated, as on any machine that is not a
# Pi. A real Pi (or that archive added to the root) is needed for the
# picamera2/numpy check, the lgpio refusal and everything that touches
# hardware. See docs/hardware.md, "Testing the installer".
#
# Slow: qemu-user emulates every instruction (pip, OpenCV's import, the
# decoders); expect 15-40 minutes per suite. Not part of `make test` or CI.
#
#     sudo deploy/test-install-arm64.sh [--suite SUITE]... [test-install.sh options]
#
# Needs root, debootstrap, qemu-user-static and binfmt-support
# (apt-get install qemu-user-static binfmt-support) and a kernel with
# binfmt_misc, which some containers do not offer.
set -euo pipefail

suites=()
passthrough=()
while (($# > 0)); do
    case "$1" in
        --suite)
            suites+=("$2")
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        *) passthrough+=("$1") ;;
    esac
    shift
done
((${#suites[@]} > 0)) || suites=(bookworm trixie)

say() {
    echo "test-install-arm64: $*"
}

die() {
    echo "test-install-arm64: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot and binfmt_misc need it)"
command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install -y debootstrap"

# arm64 programs run through qemu-aarch64, registered with binfmt_misc with
# the F flag (the interpreter is opened now, so it works inside a chroot).
binfmt=/proc/sys/fs/binfmt_misc
if [[ ! -e $binfmt/status ]]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null \
        || die "binfmt_misc is not available (not mounted at $binfmt, and mounting it failed:" \
            "a container without that kernel feature); arm64 programs cannot run here"
fi
if [[ ! -e $binfmt/qemu-aarch64 ]] && command -v update-binfmts >/dev/null; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
[[ -e $binfmt/qemu-aarch64 ]] \
    || die "no qemu-aarch64 in binfmt_misc: apt-get install -y qemu-user-static binfmt-support"
grep -qx enabled "$binfmt/qemu-aarch64" || die "qemu-aarch64 is registered but disabled"
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" \
    || die "qemu-aarch64 lacks the F (fix binary) flag, so it cannot run inside a chroot;" \
        "use Debian's qemu-user-static package, which sets it"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
started_s=$SECONDS
results=()
status=0
for suite in "${suites[@]}"; do
    say "$suite: starting"
    if bash "$here/test-install.sh" --arch arm64 --suite "$suite" --cli "${passthrough[@]}"; then
        results+=("$suite: passed")
    else
        results+=("$suite: FAILED")
        status=1
    fi
done
say "after $((SECONDS - started_s)) s:"
printf '  %s\n' "${results[@]}"
exit "$status"
