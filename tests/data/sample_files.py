"""Writers of tiny source files in every supported format, with planted bad lines.

Each writer returns (path, meta_path) and plants: one malformed line, one missing
field, one rating out of range; format-specific extras are noted per writer. Every
file holds 3 users x 4 items of good ratings (12 rows) unless said otherwise.
"""

import gzip
import json
import pathlib

GOOD = [  # (user, item, rating, day)
    (u, i, 1 + (u + i) % 5, 10 * u + i) for u in range(3) for i in range(4)
]
DAY = 86400
T0 = 1_400_000_000


def _write(path: pathlib.Path, lines: list[bytes]) -> pathlib.Path:
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _amazon_review(version: str, u, i, r, day) -> dict:
    if version == "amazon2023":
        return {
            "user_id": f"U{u}",
            "parent_asin": f"P{i}",
            "asin": f"A{i}",
            "rating": float(r),
            "title": f"summary {u}{i}",
            "text": f"review by {u} of {i}",
            "timestamp": (T0 + day * DAY) * 1000,
        }
    return {
        "reviewerID": f"U{u}",
        "asin": f"P{i}",
        "overall": float(r),
        "summary": f"summary {u}{i}",
        "reviewText": f"review by {u} of {i}",
        "unixReviewTime": T0 + day * DAY,
    }


def write_amazon(tmp: pathlib.Path, version: str):
    """Amazon files; plants also a bad-encoding line (bytes that are not UTF-8)."""
    rows = [json.dumps(_amazon_review(version, *g)).encode() for g in GOOD]
    bad = _amazon_review(version, 0, 0, 7, 99)  # rating out of range
    missing = _amazon_review(version, 1, 1, 4, 98)
    missing.pop("reviewerID" if version != "amazon2023" else "user_id")
    rows += [b"{not json", json.dumps(bad).encode(), json.dumps(missing).encode()]
    rows.append(b'{"reviewerID": "U\xff\xfe", "asin": "P1"}')
    names = {
        "amazon2014": ("reviews_Toys_5.json.gz", "meta_Toys.json.gz"),
        "amazon2018": ("Toys_5.json.gz", "meta_Toys.json.gz"),
        "amazon2023": ("Toys.jsonl.gz", "meta_Toys.jsonl"),
    }[version]
    path = _write(tmp / names[0], rows)
    meta = []
    for i in range(3):  # item 3 has no meta: its text comes from earlier reviews
        if version == "amazon2014":  # Python literal, not JSON
            rec = {
                "asin": f"P{i}",
                "title": f"Toy {i}",
                "categories": [["Toys", "Cars"]],
                "price": 9.5,
            }
            meta.append(repr(rec).encode())
        elif version == "amazon2018":
            rec = {"asin": f"P{i}", "title": f"Toy {i}", "category": ["Toys"], "price": "$9.50"}
            meta.append(json.dumps(rec).encode())
        else:
            rec = {"parent_asin": f"P{i}", "title": f"Toy {i}", "main_category": "Toys"}
            rec.update(categories=[], price=None, store="Acme", description=["fun"])
            meta.append(json.dumps(rec).encode())
    meta.append(b"garbage line")
    return path, _write(tmp / names[1], meta)


def write_yelp(tmp: pathlib.Path):
    """Yelp files; plants also a review of a business absent from the business file."""
    rows = []
    for u, i, r, day in GOOD:
        rows.append(json.dumps({
            "review_id": f"R{u}{i}", "user_id": f"U{u}", "business_id": f"B{i}",
            "stars": r, "text": f"review {u} {i}", "date": f"2015-01-{day % 28 + 1:02d} 10:00:00",
        }).encode())  # fmt: skip
    rows.append(json.dumps({"user_id": "U0", "business_id": "B0", "stars": 0,
                            "date": "2015-02-01 00:00:00"}).encode())  # fmt: skip
    rows.append(
        json.dumps({"business_id": "B1", "stars": 3, "date": "2015-02-01 00:00:00"}).encode()
    )
    rows.append(json.dumps({"user_id": "U0", "business_id": "B77", "stars": 3,
                            "date": "2015-02-01 00:00:00"}).encode())  # fmt: skip
    rows.append(b"[1, 2")
    path = _write(tmp / "yelp_academic_dataset_review.json", rows)
    biz = [json.dumps({"business_id": f"B{i}", "name": f"Cafe {i}", "categories": "Food, Coffee",
                       "city": "Oslo", "attributes": {"RestaurantsPriceRange2": "2"}}).encode()
           for i in range(4)]  # fmt: skip
    return path, _write(tmp / "yelp_academic_dataset_business.json", biz)


def write_movielens100k(tmp: pathlib.Path):
    """ml-100k folder; plants also a rating of an unknown movie id."""
    d = tmp / "ml-100k"
    d.mkdir()
    rows = [f"{u + 1}\t{i + 1}\t{r}\t{T0 + day * DAY}".encode() for u, i, r, day in GOOD]
    rows += [b"1\t2\t9\t5", b"1\t2", b"1\t99\t3\t5", b"2\t\t3\t5"]
    _write(d / "u.data", rows)
    flags = "|".join(["0"] * 18 + ["1"])
    items = [f"{i + 1}|Caf\xe9 {i} (1995)|01-Jan-1995||http://x|{flags}".encode("latin-1")
             for i in range(4)]  # fmt: skip
    _write(d / "u.item", items)
    return d, None


def write_movielens1m(tmp: pathlib.Path):
    d = tmp / "ml-1m"
    d.mkdir()
    rows = [f"{u + 1}::{i + 1}::{r}::{T0 + day * DAY}".encode() for u, i, r, day in GOOD]
    rows += [b"1::2::0::5", b"1::2::3", b"1::99::3::5", b"::2::3::5"]
    _write(d / "ratings.dat", rows)
    _write(
        d / "movies.dat", [f"{i + 1}::Movie {i} (1999)::Comedy|Drama".encode() for i in range(4)]
    )
    return d / "ratings.dat", None
