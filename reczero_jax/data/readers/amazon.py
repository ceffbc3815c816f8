"""Amazon review dumps: 2014 (McAuley), 2018 (Ni et al.) and 2023 (Hou et al.).

| version | reviews file | item key | rating | time | meta file |
|---|---|---|---|---|---|
| 2014 | reviews_<Cat>_5.json.gz | asin | overall | unixReviewTime (s) | meta_<Cat>.json.gz (*) |
| 2018 | <Cat>_5.json.gz | asin | overall | unixReviewTime (s) | meta_<Cat>.json.gz, JSON |
| 2023 | <Cat>.jsonl[.gz] | parent_asin | rating | timestamp (ms) | meta_<Cat>.jsonl[.gz], JSON |

(*) one Python literal per line, not JSON.
"""

from __future__ import annotations

import ast
import json

from etils import epath

from reczero_jax.data.readers.common import RowCollector, as_text, iter_lines, require_file
from reczero_jax.data.tables import Item, ReadReport, SourceData


def parse_record(line: str, allow_literal: bool) -> dict | None:
    """One line as a dict: JSON first, then (if allowed) a Python literal; None if neither."""
    try:
        value = json.loads(line)
    except ValueError:
        if not allow_literal:
            return None
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _categories(value) -> tuple[str, ...]:
    """Flattens 2014's list of category paths / 2018-2023's flat list, deduplicated."""
    out: list[str] = []
    stack = list(value) if isinstance(value, list | tuple) else [value]
    for v in stack:
        if isinstance(v, list | tuple):
            out.extend(as_text(x) for x in v)
        elif v:
            out.append(as_text(v))
    return tuple(dict.fromkeys(c for c in out if c))


def read_meta(path: epath.Path, version: str, report: ReadReport) -> dict[str, Item]:
    """Items of an Amazon meta file, keyed by asin (2023: parent_asin)."""
    key = "parent_asin" if version == "amazon2023" else "asin"
    items: dict[str, Item] = {}
    for _, line in iter_lines(path, report):
        rec = parse_record(line, allow_literal=True)
        if rec is None:
            report.skip(path.name, "malformed_line")
            continue
        item_id = rec.get(key)
        if not item_id:
            report.skip(path.name, f"missing_field:{key}")
            continue
        cats = rec.get("categories") if "categories" in rec else rec.get("category")
        if version == "amazon2023" and rec.get("main_category"):
            cats = [rec["main_category"], *(cats or [])]
        price = rec.get("price")
        items[str(item_id)] = Item(
            item_id=str(item_id),
            title=as_text(rec.get("title")),
            categories=_categories(cats or ()),
            brand=as_text(rec.get("brand") or rec.get("store")),
            price="" if price in (None, "None") else as_text(price),
            description=as_text(rec.get("description") or rec.get("features")),
        )
    return items


def read_amazon(path: str, meta_path: str, version: str) -> SourceData:
    """Reads one Amazon reviews file (and optionally its meta file)."""
    reviews_file = require_file(path, f"{version} reviews file")
    report = ReadReport()
    items: dict[str, Item] = {}
    if meta_path:
        items = read_meta(require_file(meta_path, f"{version} meta file"), version, report)
    if version == "amazon2023":
        fields = ("user_id", "parent_asin", "rating", "timestamp", "text", "title")
        time_scale = 1000
    else:
        fields = ("reviewerID", "asin", "overall", "unixReviewTime", "reviewText", "summary")
        time_scale = 1
    rows = RowCollector(reviews_file.name, report)
    for _, line in iter_lines(reviews_file, report):
        rec = parse_record(line, allow_literal=version == "amazon2014")
        if rec is None:
            rows.report.skip(reviews_file.name, "malformed_line")
            continue
        user, item, rating, ts, text, summary = (rec.get(f) for f in fields)
        if version == "amazon2023" and not item:
            item = rec.get("asin")
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            ts = int(ts) // time_scale
        elif ts not in (None, ""):
            try:
                ts = int(float(ts)) // time_scale
            except ValueError:
                ts = "bad"
        rows.add(user, item, rating, ts, text, summary)
    return rows.finish(reviews_file, items)
