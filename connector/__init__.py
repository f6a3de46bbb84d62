"""Referral Sync: keeps Microsoft Partner Center referrals and CRM opportunities in step."""

__version__ = "0.1.0"
