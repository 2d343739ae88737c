"""Fleet-wide control of provider traffic and spend (PRODUCT §10).

    policy    limits, scopes, the queue and who gets the next slot (pure)
    breaker   the circuit breaker per provider (pure state machine)
    recovery  an error of either OpenCode line classified; continue, fall back or give up (pure)
    budget    spend folded from a session's events; budgets and their hard stop (pure)
    leases    slots as leases in the registry, taken and given back (`Slots`)
    table     the limits table, and what `ocm limits` shows
    keys      idempotent submission keys

Everything here sits below the task runner, which takes a slot per turn (`Slots.take`),
checks its spend against its budget (`budget.check`), and asks `recovery.decide` what to do
about a failed turn.
"""

from .breaker import Breaker, BreakerPolicy, BreakerState
from .budget import BatchGate, Budget, Overrun, Spend, SpendFold, batch_gate, check
from .keys import claim_key, task_for_key, validate_key
from .leases import DEFAULT_TTL, Lease, Slots, Waiting
from .policy import Limit, Scope, parse_scope
from .recovery import Action, Decision, ProviderError, Recovery, Trouble, classify, decide
from .table import LimitStatus, list_limits, overview, remove_limits, set_limits

__all__ = [
    "DEFAULT_TTL",
    "Action",
    "BatchGate",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "Budget",
    "Decision",
    "Lease",
    "Limit",
    "LimitStatus",
    "Overrun",
    "ProviderError",
    "Recovery",
    "Scope",
    "Slots",
    "Spend",
    "SpendFold",
    "Trouble",
    "Waiting",
    "batch_gate",
    "check",
    "claim_key",
    "classify",
    "decide",
    "list_limits",
    "overview",
    "parse_scope",
    "remove_limits",
    "set_limits",
    "task_for_key",
    "validate_key",
]
