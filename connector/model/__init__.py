"""The canonical model: referrals, partner updates and the lifecycle rule. No I/O here.

Nothing in this package imports an HTTP, database, CRM or YAML library; a unit test checks it.
"""

from connector.model.lifecycle import (
    ALLOWED_SUBSTATUSES,
    Actor,
    Lifecycle,
    Status,
    Substatus,
    transition_problem,
)
from connector.model.referral import (
    Address,
    Consent,
    Contact,
    Customer,
    CustomerId,
    Deal,
    Referral,
    Requirements,
    Solution,
)
from connector.model.update import Action, PartnerUpdate, UpdateProblem, target_lifecycle

__all__ = [
    "ALLOWED_SUBSTATUSES",
    "Action",
    "Actor",
    "Address",
    "Consent",
    "Contact",
    "Customer",
    "CustomerId",
    "Deal",
    "Lifecycle",
    "PartnerUpdate",
    "Referral",
    "Requirements",
    "Solution",
    "Status",
    "Substatus",
    "UpdateProblem",
    "target_lifecycle",
    "transition_problem",
]
