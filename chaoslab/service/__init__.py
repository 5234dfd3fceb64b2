"""The stack's services (httpd on the web servers, haproxy and keepalived on the load balancers)."""
