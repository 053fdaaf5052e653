#!/bin/bash
# Wait, boundedly, until the camera and GPIO drivers are there, so that the
# kiosk's DeviceAllow= rules find them. Run by gatekiosk-devices.service,
# which gatekiosk-kiosk.service starts before itself.
#
# Why: DeviceAllow=char-video4linux (and char-media, char-gpiochip) name
# driver classes, and systemd turns each name into a device number from
# /proc/devices when the kiosk's unit starts. A class whose module (videodev,
# mc: loaded by udev when it finds the camera) is not loaded yet is skipped,
# and the kiosk is denied the camera for the life of that process. So the
# kiosk starts after these names, and a /dev/video* and /dev/gpiochip* node,
# exist.
#
# Bounded: after --timeout-s seconds (default 30) it says what is missing and
# exits 0 anyway. The gate then starts without that device (its lights and
# web work, the camera shows a fault), and when the camera fault lasts, the
# kiosk exits and systemd starts it again, resolving DeviceAllow= afresh.
#
#     gatekiosk-wait-devices [--timeout-s SECONDS]
#
# Environment, for tests: GATEKIOSK_PROC_DEVICES [/proc/devices], GATEKIOSK_DEV [/dev].
set -euo pipefail

readonly CLASSES=(video4linux media gpiochip)
readonly NODES=(video gpiochip)
proc_devices=${GATEKIOSK_PROC_DEVICES:-/proc/devices}
dev=${GATEKIOSK_DEV:-/dev}
timeout_s=30

while (($# > 0)); do
    case "$1" in
        --timeout-s)
            timeout_s=${2:?--timeout-s needs a number of seconds}
            shift
            ;;
        *)
            echo "gatekiosk-wait-devices: unknown option '$1'" >&2
            exit 2
            ;;
    esac
    shift
done

# The character-device classes and /dev nodes still missing, one per line.
missing() {
    local class node
    for class in "${CLASSES[@]}"; do
        awk -v name="$class" '
            /^Character devices:/ { chars = 1; next }
            /^$/ || /^Block devices:/ { chars = 0 }
            chars && $2 == name { found = 1 }
            END { exit !found }' "$proc_devices" || echo "char-$class"
    done
    for node in "${NODES[@]}"; do
        compgen -G "$dev/$node*" >/dev/null || echo "/dev/$node*"
    done
}

started_s=$SECONDS
while true; do
    absent=$(missing | paste -sd ' ' -)
    if [[ -z $absent ]]; then
        echo "gatekiosk-wait-devices: camera and GPIO drivers ready after $((SECONDS - started_s)) s"
        exit 0
    fi
    if ((SECONDS - started_s >= timeout_s)); then
        echo "gatekiosk-wait-devices: still missing after $timeout_s s: $absent;" \
            "starting the kiosk without them" >&2
        exit 0
    fi
    sleep 0.5
done
