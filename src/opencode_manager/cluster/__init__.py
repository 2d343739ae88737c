"""Fleets across hosts on Ray: a host agent per node (agent.py), placement (hosts.py), the
driver's link (link.py) and lifecycle routing to the owning agent (routing.py)."""
