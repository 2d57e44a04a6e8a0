"""One item of a listing in the wrong shape is that item's rejection, never the listing's.

Found by mutating one item of real documents (each key set to a number, a string, a list, an
object, null): a string or a list where the NWS API puts a geometry, geocodes, parameters or
references, a number as a Statuspage incident's link or a JSON Feed item's URL, a number as
its tags. Each raised a TypeError, AttributeError or pydantic
ValidationError out of the parser, so the whole poll failed: every other alert of the
document went unposted, poll after poll, for as long as the publisher kept the odd item.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from clarion.channels import build_channels
from clarion.model import Notice
from clarion.pipeline import ingest
from clarion.sources.base import Rejected, SourceError
from clarion.sources.feed import parse_feed
from clarion.sources.nws import parse_nws
from clarion.sources.statuspage import parse_statuspage
from clarion.store import Store
from tests.conftest import fixture_bytes
from tests.helpers import config
from tests.nws_dates import resolve

Parser = Callable[..., list[Notice]]


def _nws() -> dict[str, Any]:
    return json.loads(resolve(fixture_bytes("nws-api/testing_alerts_active.json")))


def _placed_feature(data: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in data["features"] if f["geometry"])


def _statuspage() -> dict[str, Any]:
    return json.loads(fixture_bytes("statuspage/githubstatus-summary-2022-11-25.json"))


def _json_feed() -> dict[str, Any]:
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Parks department",
        "items": [
            {
                "id": f"post-{i}",
                "url": f"https://parks.example.org/news/{i}",
                "title": f"Trail {i} closed",
                "content_text": "Storm damage; closed until further notice.",
                "date_published": "2026-12-01T10:00:00Z",
                "tags": ["trails"],
            }
            for i in range(3)
        ],
    }


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(item: dict[str, Any]) -> None:
        target = item
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


CASES = {
    "nws geometry is a string": ("nws", ("geometry",), "POLYGON((1 2))"),
    "nws geocode is a number": ("nws", ("properties", "geocode"), 5),
    "nws parameters is a list": ("nws", ("properties", "parameters"), ["NWSheadline"]),
    "nws references is a number": ("nws", ("properties", "references"), 7),
    "statuspage shortlink is a number": ("statuspage", ("shortlink",), 123),
    "json feed url is a number": ("jsonfeed", ("url",), 123),
    "json feed tags is a number": ("jsonfeed", ("tags",), 5),
}


def _document(kind: str) -> tuple[dict[str, Any], list[dict[str, Any]], Parser, str]:
    """A real (or realistic) document, its list of items, its parser, its content type."""
    if kind == "nws":
        data = _nws()
        return data, data["features"], parse_nws, "application/geo+json"
    if kind == "statuspage":
        data = _statuspage()
        return data, data["incidents"], parse_statuspage, "application/json"
    data = _json_feed()
    return data, data["items"], parse_feed, "application/feed+json"


def _item_name(kind: str, item: dict[str, Any]) -> str:
    """How a rejection names the item: its own id, so that an operator can find it."""
    if kind == "nws":
        return str(item["properties"]["id"])
    if kind == "statuspage":
        return f"incident {item['id']}"
    return str(item["id"])


@pytest.mark.parametrize("case", list(CASES))
def test_one_item_in_the_wrong_shape_is_rejected_alone(case: str) -> None:
    kind, path, value = CASES[case]
    data, items, parse, ctype = _document(kind)
    odd = _placed_feature(data) if kind == "nws" else items[0]
    without = copy.deepcopy(data)
    others = (
        without["features"]
        if kind == "nws"
        else without["incidents" if kind == "statuspage" else "items"]
    )
    others.remove(odd)
    expected = [n.identifier for n in parse(json.dumps(without).encode(), ctype, rejected=[])]
    assert expected  # the document holds other items that are read
    _set(path, value)(odd)
    body = json.dumps(data).encode()

    rejected: list[Rejected] = []
    read = parse(body, ctype, rejected=rejected)

    assert [n.identifier for n in read] == expected  # every other item, as if it were alone
    [why] = rejected
    assert why.item == _item_name(kind, odd)
    assert "not in the shape its format promises" in why.detail
    # Without a list to put it on (`clarion parse`), the odd item is a clear error.
    with pytest.raises(SourceError, match="not in the shape its format promises"):
        parse(body, ctype)


def test_the_other_alerts_of_the_document_are_stored_and_queued(store: Store) -> None:
    """The whole way, on both databases: the NWS document with one odd alert is ingested,
    every other alert stored and queued."""
    data = _nws()
    whole = parse_nws(json.dumps(data).encode(), rejected=[])
    odd = copy.deepcopy(data)
    _placed_feature(odd)["properties"]["parameters"] = ["NWSheadline"]
    rejected: list[Rejected] = []
    poll = parse_nws(json.dumps(odd).encode(), rejected=rejected)
    assert len(poll) == len(whole) - 1 and len(rejected) == 1
    assert rejected[0].item == _placed_feature(odd)["properties"]["id"]
    cfg = config()
    result = ingest(store, cfg, build_channels(cfg), poll, source="nws", include_expired=True)
    assert len(result.stored) == len(poll)
