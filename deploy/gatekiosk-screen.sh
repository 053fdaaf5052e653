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
#     GATEKIOSK_SCREEN_KEEP_ON_S  how often the screen is turned on again, seconds [30]
set -euo pipefail

url=${GATEKIOSK_SCREEN_URL:-http://127.0.0.1:8080/display}
restart_s=${GATEKIOSK_SCREEN_RESTART_S:-3}
keep_on_s=${GATEKIOSK_SCREEN_KEEP_ON_S:-30}

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

# Turn the screen on now and again every keep_on_s seconds, for as long as
# this script runs. Once is not enough: a blanker this script cannot remove
# (a swayidle from the system's labwc autostart, a monitor's own power
# saving, a session started with other settings) would turn it off for good.
# gatekiosk-screen-setup turns the session's blanking off; this is the
# second line of defence.
keep_screen_on() {
    # The loops below run in the background; they end when this script does
    # (its children get another parent as it exits, even before it is reaped).
    parent_alive() {
        local stat ppid
        stat=$(<"/proc/$BASHPID/stat")
        read -r _ ppid _ <<<"${stat##*) }"
        [[ $ppid == "$$" ]]
    }
    if [[ -n "${WAYLAND_DISPLAY:-}" ]]; then
        command -v wlopm >/dev/null || {
            say "no wlopm (apt-get install wlopm): the screen is not kept on"
            return
        }
        while parent_alive; do
            wlopm --on '*' >/dev/null 2>&1 || say "wlopm failed; the screen may blank"
            sleep "$keep_on_s"
        done &
    elif [[ -n "${DISPLAY:-}" ]] && command -v xset >/dev/null; then
        # X11 (LXDE): no screen saver and no DPMS, set again now and then
        # (not `dpms force on`: it would turn DPMS back on).
        xset s off s noblank -dpms || say "xset failed; the screen may blank"
        while parent_alive; do
            xset s off s noblank -dpms s reset >/dev/null 2>&1 || true
            sleep "$keep_on_s"
        done &
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
