"""The lease book on its own: ids, take-back, and why a release frees nothing."""

from __future__ import annotations

from typing import Any

import msgspec

from sluicegate.requests.adaptive.lease_book import LeaseBook
from sluicegate.requests.admission import RequestAdmissionItem, RequestAdmissionLease
from sluicegate.requests.identity import RequestResourceKey

ITEM = RequestAdmissionItem(resource=RequestResourceKey("p", "m"))


class Resource:
    """A stand-in resource: the lease book reads its limit and epoch."""

    class aimd:
        limit = 3
        epoch = 2


def issue(book: LeaseBook, resource: Any = None) -> RequestAdmissionLease:
    lease = book.issue(resource or Resource(), ITEM, 0.0, 0, 0.0, None, False)
    assert (lease.limit, lease.rate_limit_epoch, lease.generation) == (3, 2, book.generation)
    return lease


def test_take_returns_the_live_record_once() -> None:
    book = LeaseBook(generation=7)
    resource = Resource()
    lease = issue(book, resource)
    held = book.take(lease)
    assert not isinstance(held, str) and held[0] is lease and held[1] is resource
    assert book.take(lease) == "duplicate" and len(book) == 0


def test_foreign_forged_and_unknown_leases() -> None:
    book = LeaseBook(generation=7)
    lease = issue(book)
    assert book.take(msgspec.structs.replace(lease, generation=8)) == "wrong_generation"
    assert book.take(msgspec.structs.replace(lease, acquired_at=1.0)) == "stale_lease"
    assert len(book) == 1  # the forged copy did not free the real lease
    assert book.take(msgspec.structs.replace(lease, lease_id=99)) == "unknown_lease"


def test_a_reclaimed_grant_reads_stale_later() -> None:
    book = LeaseBook(generation=1)
    lease = issue(book)
    book.reclaim(lease)
    assert book.take(lease) == "stale_lease"
