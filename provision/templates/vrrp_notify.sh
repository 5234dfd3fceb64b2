#!/bin/sh
# Keepalived calls this on every VRRP state change of ${node}:
#   $$1 INSTANCE|GROUP, $$2 name, $$3 MASTER|BACKUP|FAULT|STOP, $$4 priority.
# One line per change, "<unix time> <state>", read by chaoslab's event recorder.
printf '%s %s\n' "$$(date +%s.%N)" "$$3" >> ${root}/run/chaoslab/vrrp-state.log
