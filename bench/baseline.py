"""The per-record flow the batched engine is measured against, in the same run.

For every referral of the list: one ``GET`` of the referral, one single-record upsert of its
opportunity (Salesforce ``PATCH sobjects/Opportunity/<external id field>/<id>``, Dataverse
``PATCH opportunities(<alternate key>='<id>')``), one ``PATCH`` of the CRM id back to Partner
Center (none for a closed referral, as in the engine), each waiting for the last: the way a
simple integration flow does it. It reuses the connector's sign-in, mapping and client for
the requests themselves, so only the shape of the flow differs. It writes only opportunities
(no accounts or contacts), which flatters it. It runs in a process of its own, like the engine.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from queue import Empty
from typing import Any
from urllib.parse import quote

__all__ = ["run_baseline"]


def _child(config: str, limit: int, queue: Any) -> None:  # noqa: ANN401, PLR0915 - a multiprocessing queue; one flow, read top to bottom
    from connector.crm.dynamics.build import build_dynamics  # noqa: PLC0415
    from connector.crm.salesforce.build import build_salesforce  # noqa: PLC0415
    from connector.crm.salesforce.client import to_json_value  # noqa: PLC0415
    from connector.http.session import build_session  # noqa: PLC0415
    from connector.mapping import map_referral  # noqa: PLC0415
    from connector.model import PartnerUpdate  # noqa: PLC0415
    from connector.observe.logging import configure_logging  # noqa: PLC0415
    from connector.partner_center.build import build_partner_center  # noqa: PLC0415
    from connector.partner_center.convert import patch_for_update, referral_from_wire  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415
    from connector.wiring import load_connection_mapping  # noqa: PLC0415

    configure_logging(level="warning", stream=Path(config).with_suffix(".baseline.log").open("a"))
    settings = load_settings(Path(config)).connections[0]
    spec = load_connection_mapping(settings)
    pc = build_partner_center(settings.partner_center, prompt=lambda _m: None)
    pc.auth.login()
    if settings.salesforce is not None:
        sf = build_salesforce(settings.salesforce, read_fields=spec.read_fields())
        ca = settings.salesforce.ca_bundle
        base = (
            f"{settings.salesforce.instance_url}/services/data/v{settings.salesforce.api_version}"
        )
        ext = settings.salesforce.external_id_field
        token = sf.auth.token

        def upsert(key: str, fields: dict[str, object]) -> str:
            body = {k: to_json_value(v) for k, v in fields.items() if k != ext}
            url = f"{base}/sobjects/Opportunity/{ext}/{quote(key, safe='')}"
            response = session.patch(url, json=body, headers={"Authorization": f"Bearer {token()}"})
            response.raise_for_status()
            return str(response.json()["id"])

    else:
        assert settings.dynamics is not None  # noqa: S101 - the config names one CRM
        dv = build_dynamics(settings.dynamics, key_column=spec.key, read_fields=spec.read_fields())
        ca = settings.dynamics.ca_bundle
        adapter = dv.adapter

        def upsert(key: str, fields: dict[str, object]) -> str:
            from connector.ports import OpportunityWrite  # noqa: PLC0415

            row = adapter._row(OpportunityWrite(key=key, fields=fields))
            url = adapter._row_url(key)
            headers = {
                "Authorization": f"Bearer {dv.auth.token()}",
                "Prefer": "return=representation",
                "OData-Version": "4.0",
            }
            response = session.patch(url, json=row.body, headers=headers)
            response.raise_for_status()
            return str(response.json()["opportunityid"])

    session = build_session(ca_bundle=ca)
    calls = {"partner_center": 0, "crm": 0}
    done = 0
    started = time.perf_counter()
    pages = pc.client.iter_pages({"$orderby": "createdDateTime asc"})
    for page in pages:
        calls["partner_center"] += 1
        for item in page.items:
            if done >= limit:
                break
            referral = referral_from_wire(pc.client.get(str(item["id"])))
            calls["partner_center"] += 1
            write = map_referral(referral, spec, create=True).write
            crm_id = upsert(write.key, dict(write.fields))
            calls["crm"] += 1
            if not referral.lifecycle.is_terminal:
                update = PartnerUpdate(referral_id=referral.id, external_reference_id=crm_id)
                ops = patch_for_update(referral, update)
                pc.client.patch(referral.id, ops, if_match=referral.etag, representation=False)
                calls["partner_center"] += 1
            done += 1
        if done >= limit:
            break
    pages.close()
    wall = time.perf_counter() - started
    queue.put({"n": done, "wall_s": wall, "calls": calls})


def run_baseline(config: Path, limit: int, timeout_s: float = 3600) -> dict[str, Any]:
    """Run the per-record flow over the first ``limit`` referrals in a child process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(str(config), limit, queue), daemon=True)
    process.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                result: dict[str, Any] = queue.get(timeout=1)
                break
            except Empty:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the baseline process failed (see its log)") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    result["referrals_per_s"] = result["n"] / result["wall_s"] if result["wall_s"] else 0.0
    return result
