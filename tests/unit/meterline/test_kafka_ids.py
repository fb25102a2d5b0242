"""Ids given to a local Kafka: cluster ids that ``kafka-storage`` accepts, readiness probe group ids."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from meterline.kafka_admin import group_probe_ids, java_string_hash
from meterline.local.kafka import new_cluster_id

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]{22}$")


def _is_kafka_uuid(cluster_id: str) -> bool:
    """What Kafka's ``Uuid.fromString`` accepts: 22 base64url characters that decode to 16 bytes."""
    return bool(_BASE64URL.match(cluster_id)) and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_no_cluster_id_starts_with_a_dash_over_100k_draws() -> None:
    ids = [new_cluster_id() for _ in range(100_000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(_is_kafka_uuid(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # the draws do reach the whole alphabet, including "-" and "_" elsewhere than first
    assert {c for i in ids for c in i[1:]} >= set("-_")


def test_a_draw_that_would_start_with_a_dash_is_drawn_again() -> None:
    dash_first = b"\xf8" + bytes(15)  # 0xf8 >> 2 == 62, the base64url index of "-"
    draws: Iterator[bytes] = iter([dash_first, bytes(16)])
    used: list[int] = []

    def source(n: int) -> bytes:
        used.append(n)
        return next(draws)

    cluster_id = new_cluster_id(source)
    assert used == [16, 16]
    assert cluster_id.startswith("A") and _is_kafka_uuid(cluster_id)
    # negative control: the previous encoding of the same first draw is the id kafka-storage refused
    assert base64.urlsafe_b64encode(dash_first).decode().rstrip("=").startswith("-")


def test_java_string_hash_matches_java() -> None:
    # values of String.hashCode() as Java computes them
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert java_string_hash("\U0001F600") == 1772899  # a surrogate pair: two UTF-16 code units


def test_probe_groups_cover_every_offsets_partition() -> None:
    for partitions in (1, 8, 50):
        groups = group_probe_ids(partitions)
        assert len(groups) == partitions
        assert [abs(java_string_hash(g)) % partitions for g in groups] == list(range(partitions))
