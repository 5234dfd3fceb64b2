#!/bin/sh
# Keepalived's check of HAProxy on ${node}: HAProxy's own pid file names a live
# process. Never a process name: in a shared PID namespace that sees the other
# node's HAProxy too. A frozen (SIGSTOPped) HAProxy still passes this check.
exec pgrep -F ${root}/run/haproxy.pid >/dev/null
