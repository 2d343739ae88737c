"""Fleets across hosts on Ray: a host agent per node (agent.py), placement (hosts.py) and the
driver's link (link.py), which acts on each cluster instance through the agent that owns it
(the `routing` layer above sends it the commands about cluster instances)."""
