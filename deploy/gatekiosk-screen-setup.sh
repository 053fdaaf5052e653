#!/bin/bash
# Start the gate screen with the desktop session of one user, and stop that
# session from blanking the screen; or undo it. Run by install.sh as that
# user (so the files stay theirs), for --screen-user or the default user,
# never for whoever ran sudo.
#
#     gatekiosk-screen-setup add HOME      start the screen, no blanking
#     gatekiosk-screen-setup remove HOME   undo what add did
#
# It edits the files of every desktop Raspberry Pi OS has shipped, whichever
# one runs (none may run yet: the installer is often used over SSH before
# anyone logged in on the screen, so nothing here asks which compositor is
# running):
#
# labwc (Raspberry Pi OS since late 2024): labwc-pi starts `labwc -m`, which
#   MERGES ~/.config/labwc/autostart with the system's /etc/xdg/labwc/autostart
#   (panel, desktop, kanshi); the user's file adds to it, it replaces nothing.
#   So the screen is one line added there, and screen blanking, which
#   raspi-config turns on as a `swayidle ... wlopm --off` line in the same
#   file, is commented out (and restored by remove). A swayidle started by
#   the system file cannot be removed from here: it is reported, and
#   gatekiosk-screen turns the outputs back on every 30 s.
# wayfire (Bookworm before labwc): an [autostart] entry in ~/.config/wayfire.ini
#   and [idle] dpms_timeout = -1 and screensaver_timeout = -1 (never; remove
#   leaves these two, which cannot be told from a site's own choice).
# LXDE on X11: the user's lxsession autostart REPLACES the system one, so it
#   starts as a copy of it, plus the screen; gatekiosk-screen runs xset.
#
# Environment, for tests: GATEKIOSK_ETC [/etc].
set -euo pipefail

readonly SCREEN_COMMAND=/opt/gatekiosk/bin/gatekiosk-screen
readonly SWAYIDLE_OFF="# gatekiosk: no blanking on the gate screen: "
etc=${GATEKIOSK_ETC:-/etc}

if (($# != 2)) || [[ $1 != add && $1 != remove ]]; then
    echo "usage: gatekiosk-screen-setup add|remove HOME" >&2
    exit 2
fi
action=$1
home=$2
[[ -d $home ]] || {
    echo "gatekiosk-screen-setup: $home is not a folder" >&2
    exit 1
}

say() {
    echo "gate screen: $*"
}

# Append LINE to FILE unless a line already starts the screen.
add_line() {
    local file=$1 line=$2
    if [[ -f $file ]] && grep -qF "$SCREEN_COMMAND" "$file"; then
        return
    fi
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$line" >>"$file"
    say "added to $file"
}

remove_lines() {
    local file=$1
    [[ -f $file ]] && grep -qF "$SCREEN_COMMAND" "$file" || return 0
    sed -i "\\|$SCREEN_COMMAND|d" "$file"
    say "removed from $file"
}

labwc() {
    local file=$home/.config/labwc/autostart system=$etc/xdg/labwc/autostart
    if [[ $action == add ]]; then
        add_line "$file" "$SCREEN_COMMAND &"
        if grep -q '^[^#]*swayidle' "$file"; then
            sed -i "s|^\\([^#]*swayidle.*\\)\$|$SWAYIDLE_OFF\\1|" "$file"
            say "screen blanking (swayidle) turned off in $file"
        fi
        if [[ -f $system ]] && grep -q '^[^#]*swayidle' "$system"; then
            echo "gate screen: warning: $system starts swayidle, which labwc merges into" \
                "every session; the screen may blank for up to 30 s until gatekiosk-screen" \
                "turns it on again (remove that line to avoid it)" >&2
        fi
    elif [[ -f $file ]]; then
        remove_lines "$file"
        if grep -qF "$SWAYIDLE_OFF" "$file"; then
            sed -i "s|^$SWAYIDLE_OFF||" "$file"
            say "screen blanking (swayidle) restored in $file"
        fi
        # Nothing left: the file is not needed (the system one still applies).
        grep -q '[^[:space:]]' "$file" || rm -f "$file"
    fi
}

wayfire() {
    local ini=$home/.config/wayfire.ini
    if [[ $action == remove ]]; then
        remove_lines "$ini"
        return
    fi
    [[ -f $ini ]] || command -v wayfire >/dev/null || return 0
    if [[ -f $ini ]] && grep -qF "$SCREEN_COMMAND" "$ini"; then
        :
    elif [[ -f $ini ]] && grep -q '^\[autostart\]' "$ini"; then
        sed -i "/^\\[autostart\\]/a gatekiosk_screen = $SCREEN_COMMAND" "$ini"
        say "added to $ini"
    else
        add_line "$ini" $'\n[autostart]\ngatekiosk_screen = '"$SCREEN_COMMAND"
    fi
    sed -i -e '/^dpms_timeout *=/d' -e '/^screensaver_timeout *=/d' "$ini"
    if grep -q '^\[idle\]' "$ini"; then
        sed -i '/^\[idle\]/a dpms_timeout = -1\nscreensaver_timeout = -1' "$ini"
    else
        printf '\n[idle]\ndpms_timeout = -1\nscreensaver_timeout = -1\n' >>"$ini"
    fi
}

lxde() {
    local lx=$home/.config/lxsession/LXDE-pi/autostart system=$etc/xdg/lxsession/LXDE-pi/autostart
    if [[ $action == remove ]]; then
        remove_lines "$lx"
        return
    fi
    [[ -d $etc/xdg/lxsession/LXDE-pi ]] || return 0
    if [[ ! -f $lx && -f $system ]]; then
        mkdir -p "$(dirname "$lx")"
        cp "$system" "$lx"
    fi
    add_line "$lx" "@$SCREEN_COMMAND"
}

labwc
wayfire
lxde
