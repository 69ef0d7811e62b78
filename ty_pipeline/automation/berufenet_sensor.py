"""`berufenet_failed_titles_sensor`: registers failed Berufenet titles as dynamic partitions.

Cheap by construction (docs/dagster_pitfalls.md §C3): one indexed query for titles recorded after the cursor (`seq`
of `berufenet_failed_titles`), one read of the registered keys, and the add/delete requests returned
with the tick (`SensorResult.dynamic_partitions_requests`, atomic with the cursor). It launches no runs:
a user selects the failed titles worth the GPU time and backfills `berufenet_title_retry`.

Order and cap: the titles read in one tick are registered most frequent first (postings with that title
over all partitions). At most `max_failed_title_partitions` (default 5,000) keys are registered; when the
cap is reached, keys of titles resolved since are deleted to make room, and otherwise the cursor stays
before the first title still waiting, so no failed title is skipped for good.
"""

import json

import dagster as dg
from sqlalchemy import Engine

from ty_pipeline.assets.berufenet_retry import failed_titles_partitions
from ty_pipeline.domain.failed_titles import PARTITIONS_NAME, is_legacy_key
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import (
    failed_titles_after,
    legacy_key_replacements,
    partition_keys_in,
    resolved_partition_keys,
)

SENSOR_NAME = "berufenet_failed_titles_sensor"
ROWS_PER_TICK = 2_000


def cursor_seq(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(json.loads(cursor).get("seq", 0))
    except (ValueError, AttributeError):
        return 0


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=300,
    # On by default: it launches no runs, it only makes failed titles selectable for a backfill.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers titles that `berufenet_mappings` left unresolved as `berufenet_failed_titles` partitions of "
        "`berufenet_title_retry` (most frequent first, capped), so they can be backfilled from the UI."
    ),
)
def berufenet_failed_titles_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    profession_catalog: ProfessionCatalogResource,
) -> dg.SensorResult | dg.SkipReason:
    seq = cursor_seq(context.cursor)
    engine = warehouse.get_engine()
    registered = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    replaced = _replace_legacy_keys(engine, registered)
    if replaced is not None:
        context.log.info(replaced.skip_reason)
        return replaced
    rows = failed_titles_after(engine, seq, ROWS_PER_TICK)
    if not rows:
        return dg.SkipReason("no new failed titles since the last tick")
    cap = max(0, profession_catalog.max_failed_title_partitions)
    waiting = [r for r in rows if not r.resolved and r.partition_key not in registered]
    waiting.sort(key=lambda r: (-r.posting_count, r.seq))  # most frequent first
    room = cap - len(registered)
    to_delete: list[str] = []
    if len(waiting) > room:
        to_delete = resolved_partition_keys(engine, registered)[: len(waiting) - max(room, 0)]
        room += len(to_delete)
    to_add = [r.partition_key for r in waiting[: max(room, 0)]]
    left = waiting[max(room, 0) :]
    # Past every row handled; rows still waiting for room are read again next time.
    cursor = min(r.seq for r in left) - 1 if left else rows[-1].seq
    if not to_add and not to_delete and cursor == seq:
        return dg.SkipReason(
            f"{len(registered)} failed-title partitions registered, the cap of {cap} is reached; "
            f"{len(left)} failed titles wait until resolved titles free room"
        )
    # This sensor never launches runs, so every tick is "skipped" in the tick history: the reason is
    # the one place there that says what the tick did.
    reason = _tick_summary(len(rows), to_add, to_delete, len(left))
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_delete:
        requests.append(failed_titles_partitions.build_delete_request(to_delete))
    if to_add:
        requests.append(failed_titles_partitions.build_add_request(to_add))
    context.log.info(reason)
    return dg.SensorResult(dynamic_partitions_requests=requests, cursor=json.dumps({"seq": cursor}),
                           skip_reason=reason)


def _replace_legacy_keys(engine: Engine, registered: set[str]) -> dg.SensorResult | None:
    """Partitions registered under the previous key scheme (`<10 hex>-<slug>`) are re-registered under the
    title's current key (migration 0002 renamed the rows) and the old keys deleted, one-for-one, so the cap
    holds. Old keys of titles resolved since, or unknown to this warehouse, are only deleted. None when
    nothing is registered under an old key (every tick after the first one)."""
    shaped = [k for k in registered if is_legacy_key(k)]  # no query at all on every later tick
    if not shaped:
        return None
    stored = set(partition_keys_in(engine, shaped))  # a current key may look like an old one ("abcdef0123")
    legacy = sorted(k for k in shaped if k not in stored)
    if not legacy:
        return None
    current = legacy_key_replacements(engine, legacy)
    to_add = sorted({r.partition_key for r in current.values() if not r.resolved} - registered)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = [
        failed_titles_partitions.build_delete_request(legacy)
    ]
    if to_add:
        requests.append(failed_titles_partitions.build_add_request(to_add))
    reason = (
        f"replaced {len(legacy)} partitions registered under the old key form (hash first) by {len(to_add)} keys "
        "that read as the title; their run history stays under the old keys"
    )
    # The cursor is left as it is: the next tick registers new failed titles as usual.
    return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=reason)


def _tick_summary(read: int, added: list[str], deleted: list[str], waiting: int) -> str:
    """What a tick that changed the partitions (or only moved its cursor) did, for the tick history."""
    if not added and not deleted:
        return f"the {read} failed titles recorded since the last tick are resolved or already registered"
    parts = []
    if added:
        parts.append(
            f"registered {len(added)} failed titles as partitions, most frequent first ({added[0]}); no run "
            "launched: backfill `berufenet_title_retry` to retry them"
        )
    if deleted:
        parts.append(f"removed {len(deleted)} partitions of titles resolved since")
    if waiting:
        parts.append(f"{waiting} failed titles wait for room under the cap")
    return "; ".join(parts)
