"""Keepalived's VRRP view of the load balancers."""
