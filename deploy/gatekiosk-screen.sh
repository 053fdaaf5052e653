#!/bin/bash
# The gate screen: Chromium in kiosk mode on the admin web's /display page.
# Started by the desktop session's autostart (deploy/install.sh --with-screen
# writes it for labwc, wayfire and LXDE/X11), as the desktop user.
#
# Waits until the web answers, keeps the screen from blanking, and restarts
# Chromium whenever it exits: a browser crash costs a few seconds of screen,
# never a scan (the kiosk service scans on its own).
#
# Environment (defaults in brackets):
#     GATEKIOSK_SCREEN_URL      page to show [http://127.0.0.1:8080/display]
#     GATEKIOSK_SCREEN_BROWSER  browser command [chromium, else chromium-browser]
#     GATEKIOSK_SCREEN_RESTART_S  pause before restarting the browser, seconds [3]
set -euo pipefail

url=${GATEKIOSK_SCREEN_URL:-http://127.0.0.1:8080/display}
restart_s=${GATEKIOSK_SCREEN_RESTART_S:-3}

say() {
    echo "gatekiosk-screen: $*" >&2
}

browser=${GATEKIOSK_SCREEN_BROWSER:-}
if [[ -z "$browser" ]]; then
    for candidate in chromium chromium-browser; do
        if command -v "$candidate" >/dev/null; then
            browser=$candidate
            break
        fi
    done
fi
if [[ -z "$browser" ]]; then
    say "no Chromium found (apt-get install chromium); the gate screen stays off"
    exit 1
fi

web_answers() {
    curl --silent --fail --output /dev/null --max-time 2 "$url"
}

keep_screen_on() {
    # X11 (LXDE on older Raspberry Pi OS): no screen saver, no DPMS.
    if [[ -n "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]] && command -v xset >/dev/null; then
        xset s off s noblank -dpms || say "xset failed; the screen may blank"
    fi
    # Wayland (labwc, wayfire): turn the outputs on. What blanks them there is
    # swayidle from the session's autostart; install.sh disables it with
    # `raspi-config nonint do_blanking 1` on Raspberry Pi OS.
    if [[ -n "${WAYLAND_DISPLAY:-}" ]] && command -v wlopm >/dev/null; then
        wlopm --on '*' || say "wlopm failed; the screen may blank"
    fi
}

say "waiting for $url"
waited_s=0
until web_answers; do
    sleep 2
    waited_s=$((waited_s + 2))
    if ((waited_s % 60 == 0)); then
        say "still waiting for $url after ${waited_s} s (is gatekiosk-web.service running?)"
    fi
done

keep_screen_on

while true; do
    say "starting $browser on $url"
    # A fresh profile each time (--incognito) so a crash leaves no
    # "restore pages?" bubble; no keyring prompt (--password-store=basic).
    "$browser" \
        --kiosk \
        --noerrdialogs \
        --disable-infobars \
        --incognito \
        --no-first-run \
        --password-store=basic \
        --check-for-update-interval=31536000 \
        --disable-features=Translate \
        "$url" || true
    say "$browser exited; restarting in $restart_s s"
    sleep "$restart_s"
    until web_answers; do
        sleep 2
    done
done
