#!/bin/sh
# The guestbook's frontend: the page (www/index.html) and its API (www/cgi-bin/) on $PORT.
# Settings come from the environment (the guestbook ConfigMap): GUESTBOOK_TITLE,
# GUESTBOOK_GREETING, BACKEND_URL.
echo "guestbook frontend on :${PORT:-8080}, backend ${BACKEND_URL:-http://guestbook-backend:8080}"
exec httpd -f -v -p "${PORT:-8080}" -h /app/www
