"""The sync engine: the inbound and outbound cycles of one connection, and their reports."""

from connector.engine.inbound import PC_STREAM, InboundCycle
from connector.engine.outbound import CRM_STREAM, OutboundCycle
from connector.engine.report import PlannedChange, RunReport
from connector.engine.sync import ConnectionSync, CycleResult

__all__ = [
    "CRM_STREAM",
    "PC_STREAM",
    "ConnectionSync",
    "CycleResult",
    "InboundCycle",
    "OutboundCycle",
    "PlannedChange",
    "RunReport",
]
