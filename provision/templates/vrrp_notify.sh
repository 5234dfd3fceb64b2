#!/bin/sh
# Keepalived on ${node} starts this once and writes every VRRP state change to the FIFO $$1,
# one line each, in the order the changes happen: INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>.
# (A notify script per change would not keep that order: two changes milliseconds apart
# spawn two processes, and the later one can read the clock first.)
# One line per change, "<unix time> <state>", read by chaoslab's event recorder
# (world-readable: it reads without sudo; Keepalived runs scripts with umask 077).
umask 022
while read -r kind _name state _priority; do
    if [ "$$kind" = INSTANCE ]; then
        printf '%s %s\n' "$$(date +%s.%N)" "$$state" >> ${root}/run/chaoslab/vrrp-state.log
    fi
done < "$$1"
