"""Settings → one running connection: Partner Center source, CRM adapter, mapping, engine.

The only place that knows every part. A mapping that does not load, or does not fit the CRM's
metadata, stops start-up with a :class:`~connector.errors.ConfigError` naming each problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import requests
from structlog.typing import FilteringBoundLogger

from connector.clock import SystemClock
from connector.crm.dynamics.build import build_dynamics
from connector.crm.salesforce.build import build_salesforce
from connector.engine import ConnectionSync
from connector.errors import ConfigError, ConfigProblem
from connector.mapping import MappingSpec, requirements
from connector.mapping_file import default_mapping_path, load_mapping_file
from connector.partner_center.build import PartnerCenter, build_partner_center
from connector.ports import Clock, CrmAdapter, StateStore
from connector.settings import ConnectionSettings

__all__ = ["Connection", "build_connection", "check_crm_metadata", "load_connection_mapping"]


@dataclass(frozen=True, slots=True)
class Connection:
    settings: ConnectionSettings
    spec: MappingSpec
    crm: CrmAdapter
    partner_center: PartnerCenter
    sync: ConnectionSync


def load_connection_mapping(settings: ConnectionSettings) -> MappingSpec:
    path = settings.mapping or default_mapping_path(settings.crm)
    spec = load_mapping_file(path)
    if spec.crm != settings.crm:
        raise ConfigError(
            [
                ConfigProblem(
                    str(path), "crm", f"maps {spec.crm}, but {settings.name} uses {settings.crm}"
                )
            ]
        )
    return spec


def check_crm_metadata(spec: MappingSpec, crm: CrmAdapter) -> None:
    """Every field, external id and stage the mapping names exists in the CRM, or ConfigError."""
    problems = crm.check_metadata(requirements(spec))
    if problems:
        raise ConfigError(
            ConfigProblem(
                spec.source, f"{p.sobject}.{p.field}" if p.field else p.sobject, p.message
            )
            for p in problems
        )


def build_connection(
    settings: ConnectionSettings,
    store: StateStore,
    *,
    clock: Clock | None = None,
    logger: FilteringBoundLogger | None = None,
    prompt: Callable[[str], None] | None = None,
    on_request: Callable[[str, int], None] | None = None,
    on_retry: Callable[[str, float, bool], None] | None = None,
    check_metadata: bool = True,
) -> Connection:
    """``on_request(service, status)`` is told of every HTTP response and ``on_retry(service,
    wait_seconds, asked_by_server)`` of every back-off sleep (the request and retry metrics)."""
    spec = load_connection_mapping(settings)

    def retries(service: str) -> Callable[[float, bool], None] | None:
        if on_retry is None:
            return None
        report = on_retry
        return lambda wait, asked: report(service, wait, asked)

    def observer(service: str) -> Callable[[requests.Response], None] | None:
        if on_request is None:
            return None
        report = on_request
        return lambda response: report(service, response.status_code)

    time: Clock = clock or SystemClock()
    crm: CrmAdapter
    if settings.crm == "dynamics" and settings.dynamics is not None:
        crm = build_dynamics(
            settings.dynamics,
            key_column=spec.key,
            read_fields=spec.read_fields(),
            now=time.now,
            on_response=observer("dynamics"),
            on_retry=retries("dynamics"),
            logger=logger,
        ).adapter
    elif settings.crm == "salesforce" and settings.salesforce is not None:
        crm = build_salesforce(
            settings.salesforce,
            read_fields=spec.read_fields(),
            now=time.now,
            on_response=observer("salesforce"),
            on_retry=retries("salesforce"),
            logger=logger,
        ).adapter
    else:
        raise ConfigError(
            [
                ConfigProblem(
                    "(config)",
                    f"connection.{settings.name}.{settings.crm}",
                    f"the [connection.{settings.crm}] section is missing",
                )
            ]
        )
    if check_metadata:
        check_crm_metadata(spec, crm)
    partner_center = build_partner_center(
        settings.partner_center,
        prompt=prompt,
        now=time.now,
        on_response=observer("partner_center"),
        on_retry=retries("partner_center"),
        logger=logger,
    )
    sync = ConnectionSync(
        settings.name,
        source=partner_center.source,
        crm=crm,
        store=store,
        spec=spec,
        clock=time,
        logger=logger,
    )
    return Connection(
        settings=settings, spec=spec, crm=crm, partner_center=partner_center, sync=sync
    )
