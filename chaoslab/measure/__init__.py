"""The instrument and the checker: the client's requests, the run's events, the analysis against
VRRP theory, the charts and the history. Nothing here knows the lab: it measures what it is given."""
