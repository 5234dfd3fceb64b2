#!/bin/sh
# Keepalived's second opinion on HAProxy: it runs, and its admin socket is there.
pidof haproxy >/dev/null || exit 1
[ -S /run/haproxy/admin.sock ] || exit 1
exit 0
