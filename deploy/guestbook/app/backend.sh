#!/bin/sh
# The guestbook's backend: keeps the entries in $GUESTBOOK_DATA/entries (a volume) and serves
# them on $PORT (backend/cgi-bin/entries).
data="${GUESTBOOK_DATA:-/data}"
mkdir -p "$data" || exit 1
touch "$data/entries" || exit 1
echo "guestbook backend on :${PORT:-8080}, $(wc -l < "$data/entries") entries in $data"
exec httpd -f -v -p "${PORT:-8080}" -h /app/backend
