"""Partner Center Referrals simulator: the API of spec §7 over an in-process store.

:class:`PartnerCenterSimulator` is the WSGI app (routes, auth, headers); its
:class:`ReferralStore` keeps raw wire dicts and does the bookkeeping (eTags, dates, expiry);
:mod:`~sandbox.partner_center.writes` holds what PATCH/PUT/POST may do,
:mod:`~sandbox.partner_center.odata` and :mod:`~sandbox.partner_center.listing` the query
language and the paging, :func:`generate_referrals` realistic seed data.
"""

from sandbox.partner_center.errors import ApiError, error_body
from sandbox.partner_center.generator import generate_referrals
from sandbox.partner_center.simulator import AUDIENCE, ROUTE_NAMES, ROUTES, PartnerCenterSimulator
from sandbox.partner_center.store import ReferralStore, load_seed_file
from sandbox.partner_center.writes import Partner

__all__ = [
    "AUDIENCE",
    "ROUTES",
    "ROUTE_NAMES",
    "ApiError",
    "Partner",
    "PartnerCenterSimulator",
    "ReferralStore",
    "error_body",
    "generate_referrals",
    "load_seed_file",
]
