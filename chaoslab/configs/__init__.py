"""A pair's own keepalived.conf and haproxy.cfg: read, mapped, judged, turned into a topology."""
