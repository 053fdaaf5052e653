#!/bin/bash
# Back up the gatekiosk database: a consistent copy with SQLite's
# VACUUM INTO, taken while the kiosk and the web keep writing (never a file
# copy, which can catch the database, its -wal and -shm files out of step).
# One backup per day, named gatekiosk-YYYY-MM-DD.db (a second run on the same
# day replaces that day's file); the newest GATEKIOSK_BACKUP_KEEP are kept.
# Each backup is checked with PRAGMA integrity_check before it counts.
#
# Run daily by gatekiosk-maintenance.service, as the gatekiosk user:
#     /opt/gatekiosk/bin/gatekiosk-backup
# Environment (defaults in brackets):
#     GATEKIOSK_DB            database [/var/lib/gatekiosk/gatekiosk.db]
#     GATEKIOSK_BACKUP_DIR    folder for the backups [/var/lib/gatekiosk/backup]
#     GATEKIOSK_BACKUP_KEEP   how many daily backups to keep [7]
#     GATEKIOSK_BACKUP_DATE   the day in the file name [today, YYYY-MM-DD]
set -euo pipefail

db=${GATEKIOSK_DB:-/var/lib/gatekiosk/gatekiosk.db}
backup_dir=${GATEKIOSK_BACKUP_DIR:-/var/lib/gatekiosk/backup}
keep=${GATEKIOSK_BACKUP_KEEP:-7}
day=${GATEKIOSK_BACKUP_DATE:-$(date +%F)}

fail() {
    echo "gatekiosk-backup: $*" >&2
    exit 1
}

case "$keep" in
    '' | *[!0-9]* | 0) fail "GATEKIOSK_BACKUP_KEEP must be a whole number of at least 1, not '$keep'" ;;
esac
[[ "$day" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || fail "GATEKIOSK_BACKUP_DATE must be YYYY-MM-DD, not '$day'"
command -v sqlite3 >/dev/null || fail "the sqlite3 command is missing: apt-get install sqlite3"
[[ -f "$db" ]] || fail "no database at $db (has the kiosk run yet?)"

# Backups hold personal data: readable by the gatekiosk user only.
umask 077
mkdir -p "$backup_dir"

target="$backup_dir/gatekiosk-$day.db"
partial="$backup_dir/.gatekiosk-$day.db.partial"
rm -f "$partial"
trap 'rm -f "$partial"' EXIT

# VACUUM INTO refuses an existing file, so write beside it, check, then
# rename over the day's backup in one step. Single quotes in the path are
# doubled for the SQL string literal.
sqlite3 -bail -cmd '.timeout 30000' "$db" \
    "VACUUM INTO '${partial//\'/\'\'}'" \
    || fail "VACUUM INTO failed for $db"
check=$(sqlite3 -bail "$partial" 'PRAGMA integrity_check') \
    || fail "the new backup cannot be opened"
[[ "$check" == ok ]] || fail "the new backup fails PRAGMA integrity_check: $check"
mv -f "$partial" "$target"
trap - EXIT
echo "gatekiosk-backup: $db -> $target"

# Keep the newest $keep backups: names sort by date.
shopt -s nullglob
backups=("$backup_dir"/gatekiosk-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].db)
excess=$(( ${#backups[@]} - keep ))
for (( i = 0; i < excess; i++ )); do
    rm -f -- "${backups[i]}"
    echo "gatekiosk-backup: removed ${backups[i]}"
done
