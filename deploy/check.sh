#!/usr/bin/env bash
# Syntax check of the deployment examples (run by tests/test_deploy.py):
# - the systemd units with `systemd-analyze verify` (any warning fails), the eutirads
#   binary pointed at one that exists here;
# - the nginx site with `nginx -t`, inside a throw-away main config with a self-signed
#   certificate, when nginx is installed (it is not a test dependency).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if command -v systemd-analyze >/dev/null 2>&1; then
    for unit in "$here"/systemd/*.service; do
        sed "s#/opt/eutirads/venv/bin/eutirads#/bin/true#" "$unit" > "$work/$(basename "$unit")"
    done
    out="$(systemd-analyze verify "$work"/*.service 2>&1)" || { echo "$out"; exit 1; }
    if [ -n "$out" ]; then echo "$out"; exit 1; fi
    echo "systemd units: ok"
else
    echo "systemd units: not checked (no systemd-analyze)"
fi

if command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
    mkdir -p "$work/nginx/logs"
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    sed -e "s#/etc/ssl/eutirads/fullchain.pem#$work/cert.pem#" \
        -e "s#/etc/ssl/eutirads/privkey.pem#$work/key.pem#" \
        -e "s#/var/log/nginx/#$work/nginx/logs/#" "$here/nginx/eutirads.conf" > "$work/site.conf"
    cat > "$work/nginx.conf" <<CONF
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events {}
http { include $work/site.conf; }
CONF
    nginx -t -q -p "$work/nginx" -c "$work/nginx.conf"
    echo "nginx site: ok"
else
    echo "nginx site: not checked (nginx not installed)"
fi
