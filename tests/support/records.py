"""Rows as the federation pipeline stores them, for tests that write storage directly."""

from __future__ import annotations

from federation.ports import InboundRecord


def inbound_record(name: str, received_at_ms: int) -> InboundRecord:
    """An activity from bob@partner.example as the inbox archives it (not yet applied)."""
    return InboundRecord(
        activity_id=f"https://partner.example/activities/{name}",
        activity_type="Create",
        actor_uri="https://partner.example/users/bob",
        origin_host="partner.example",
        key_id="https://partner.example/users/bob#main-key",
        target="/inbox",
        headers=[],
        body=b'{"id": "x"}',
        received_at_ms=received_at_ms,
    )
