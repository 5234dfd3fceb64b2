"""The cables between the nodes: pull them, degrade them, partition VRRP."""
