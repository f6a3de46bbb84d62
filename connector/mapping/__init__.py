"""Mapping files: which CRM field comes from which canonical value, who owns it, and the
lifecycle table. Parsed and applied here without I/O; ``connector.mapping_file`` reads them.
"""

from connector.mapping.inbound import (
    MappedWrite,
    account_of,
    contact_ref,
    created_partner_values,
    inbound_fingerprint,
    map_referral,
    seeded_partner_values,
)
from connector.mapping.outbound import CrmView, Decision, decide, outbound_fingerprint, read_change
from connector.mapping.parse import parse_mapping
from connector.mapping.requirements import requirements
from connector.mapping.spec import FieldMap, LifecycleMap, MappingSpec, Owner, StageValue, Transform

__all__ = [
    "CrmView",
    "Decision",
    "FieldMap",
    "LifecycleMap",
    "MappedWrite",
    "MappingSpec",
    "Owner",
    "StageValue",
    "Transform",
    "account_of",
    "contact_ref",
    "created_partner_values",
    "decide",
    "inbound_fingerprint",
    "map_referral",
    "outbound_fingerprint",
    "parse_mapping",
    "read_change",
    "requirements",
    "seeded_partner_values",
]
