#!/bin/sh
# Keepalived on ${node} starts this once and writes every VRRP state change to the FIFO $$1,
# one line each, in the order the changes happen: INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>.
# (A notify script per change would not keep that order: two changes milliseconds apart
# spawn two processes, and the later one can read the clock first.)
# One line per change, "<unix time> <state>", read by chaoslab's event recorder
# (world-readable: it reads without sudo; Keepalived runs scripts with umask 077).
umask 022
# Only states: Keepalived 2 also writes MASTER_RX_LOWER_PRI (a master heard a lower priority's
# advert), which changes nothing.
while read -r kind _name state _priority; do
    case "$$kind $$state" in
        "INSTANCE MASTER" | "INSTANCE BACKUP" | "INSTANCE FAULT" | "INSTANCE STOP")
            printf '%s %s\n' "$$(date +%s.%N)" "$$state" >> ${root}/run/chaoslab/vrrp-state.log ;;
    esac
done < "$$1"
