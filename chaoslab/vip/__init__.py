"""The virtual IP as clients see it: does it answer, from which backends, who holds it."""
