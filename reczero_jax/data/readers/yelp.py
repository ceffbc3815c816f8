"""Yelp Open Dataset: ``yelp_academic_dataset_review.json`` (+ ``..._business.json``).

Review: review_id, user_id, business_id, stars, text, date ('YYYY-MM-DD HH:MM:SS', UTC
assumed). Business: business_id, name, categories (comma-separated), city, state,
attributes.RestaurantsPriceRange2 (1-4). When a business file is read, reviews of
businesses it does not list are skipped as 'unknown_item'.
"""

from __future__ import annotations

import datetime
import json

from etils import epath

from reczero_jax.data.readers.common import RowCollector, as_text, iter_lines, require_file
from reczero_jax.data.tables import Item, ReadReport, SourceData
from reczero_jax.paths import as_path

BUSINESS_FILE = "yelp_academic_dataset_business.json"


def _parse_date(value) -> int | None:
    try:
        dt = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return int(dt.timestamp())


def read_businesses(path: epath.Path, report: ReadReport) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for _, line in iter_lines(path, report):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            report.skip(path.name, "malformed_line")
            continue
        bid = rec.get("business_id")
        if not bid:
            report.skip(path.name, "missing_field:business_id")
            continue
        attrs = rec.get("attributes") or {}
        price = attrs.get("RestaurantsPriceRange2") if isinstance(attrs, dict) else None
        cats = [c.strip() for c in (rec.get("categories") or "").split(",") if c.strip()]
        place = ", ".join(as_text(rec.get(k)) for k in ("city", "state") if rec.get(k))
        items[str(bid)] = Item(
            item_id=str(bid),
            title=as_text(rec.get("name")),
            categories=tuple(cats),
            price=f"{price} of 4" if price not in (None, "None") else "",
            description=place,
        )
    return items


def read_yelp(path: str, meta_path: str) -> SourceData:
    reviews_file = require_file(path, "Yelp review file")
    report = ReadReport()
    business_file = as_path(meta_path) if meta_path else reviews_file.parent / BUSINESS_FILE
    items: dict[str, Item] = {}
    if meta_path or business_file.is_file():
        items = read_businesses(require_file(business_file, "Yelp business file"), report)
    rows = RowCollector(reviews_file.name, report)
    for _, line in iter_lines(reviews_file, report):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            report.skip(reviews_file.name, "malformed_line")
            continue
        bid = rec.get("business_id")
        if items and bid and bid not in items:
            report.skip(reviews_file.name, "unknown_item")
            continue
        date = rec.get("date")
        ts = _parse_date(date) if date else None
        if date and ts is None:
            report.skip(reviews_file.name, "bad_timestamp")
            continue
        rows.add(rec.get("user_id"), bid, rec.get("stars"), ts, rec.get("text"), "")
    return rows.finish(reviews_file, items)
