#!/bin/bash
# Which camera is attached, for install.sh's camera.source and camera.device.
#
# Prints one line, SOURCE<TAB>DEVICE, and explains on standard error:
#     picamera2<TAB>0                       a Camera Module on the CSI connector (libcamera)
#     v4l2<TAB>/dev/v4l/by-id/...-index0    a USB webcam (the uvcvideo driver)
#     none<TAB>                             no camera found (yet)
# A Camera Module wins when both are attached: it is the camera the gate is
# built for (docs/hardware.md).
#
# Why not "picamera2 whenever it is installed": Raspberry Pi OS's desktop
# image has python3-picamera2 everywhere, and libcamera's UVC handler gives a
# webcam one stream, so a webcam must be read through V4L2.
#
# How a Camera Module is recognised: `rpicam-hello --list-cameras` (or the
# older libcamera-hello) lists it with a device-tree path through an I2C bus
# ("/i2c@"); webcams appear there with a USB path and are left to the next
# rule. Without those tools (a Lite image), the sensor's V4L2 sub-device is an
# I2C device in sysfs. A webcam is a video4linux node whose driver is
# uvcvideo, and index 0 is its picture node (index 1 carries metadata).
#
# Environment, for tests: GATEKIOSK_SYSFS [/sys], GATEKIOSK_DEV [/dev].
set -euo pipefail

sysfs=${GATEKIOSK_SYSFS:-/sys}
dev=${GATEKIOSK_DEV:-/dev}

note() {
    echo "gatekiosk-detect-camera: $*" >&2
}

# Camera Modules libcamera lists (paths through an I2C bus).
libcamera_csi_cameras() {
    local tool
    for tool in rpicam-hello libcamera-hello; do
        if command -v "$tool" >/dev/null; then
            timeout 20 "$tool" --list-cameras 2>/dev/null \
                | grep -E '^[[:space:]]*[0-9]+ : ' | grep -F '/i2c@' || true
            return
        fi
    done
}

# Camera sensors in sysfs: V4L2 sub-devices that are I2C devices.
sysfs_csi_sensors() {
    local node bus
    for node in "$sysfs"/class/video4linux/v4l-subdev*; do
        [[ -e $node/device/subsystem ]] || continue
        bus=$(basename "$(readlink -f "$node/device/subsystem")")
        if [[ $bus == i2c ]]; then
            cat "$node/name" 2>/dev/null || basename "$node"
        fi
    done
}

# The picture node of the first USB webcam, as /dev/videoN.
uvc_capture_node() {
    local node driver index
    while read -r node; do
        [[ -e $node/device/driver ]] || continue
        driver=$(basename "$(readlink -f "$node/device/driver")")
        index=$(cat "$node/index" 2>/dev/null || echo 0)
        if [[ $driver == uvcvideo && $index == 0 ]]; then
            echo "/dev/$(basename "$node")"
            return
        fi
    done < <(find "$sysfs/class/video4linux" -mindepth 1 -maxdepth 1 -name 'video*' 2>/dev/null | sort -V)
}

# A name for /dev/videoN that survives replugging and renumbering, if udev made one.
stable_name() {
    local node=$1 link
    for link in "$dev"/v4l/by-id/*; do
        [[ -L $link ]] || continue
        if [[ $(basename "$(readlink "$link")") == "$(basename "$node")" ]]; then
            echo "/dev/v4l/by-id/$(basename "$link")"
            return
        fi
    done
    echo "$node"
}

csi=$(libcamera_csi_cameras)
[[ -n $csi ]] || csi=$(sysfs_csi_sensors)
uvc=$(uvc_capture_node)

if [[ -n $csi ]]; then
    note "Camera Module (libcamera): $(head -n 1 <<<"$csi" | sed 's/^[[:space:]]*//')"
    if [[ -n $uvc ]]; then
        note "a USB webcam ($uvc) is attached too; the Camera Module is used"
    fi
    printf 'picamera2\t0\n'
elif [[ -n $uvc ]]; then
    device=$(stable_name "$uvc")
    note "USB webcam (uvcvideo): $device"
    printf 'v4l2\t%s\n' "$device"
else
    note "no camera found"
    printf 'none\t\n'
fi
