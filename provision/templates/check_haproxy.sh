#!/bin/sh
# Keepalived's check of HAProxy on ${node}: the pid in HAProxy's own pid file
# names a live process. Never a process name: in a shared PID namespace that
# sees the other node's HAProxy too. A zombie is dead (an init may reap it
# late); a frozen (SIGSTOPped) HAProxy still passes this check.
pid=$$(cat ${root}/run/haproxy.pid 2>/dev/null) || exit 1
state=$$(ps -o stat= -p "$$pid") || exit 1
case "$$state" in
    Z*) exit 1 ;;
esac
exit 0
