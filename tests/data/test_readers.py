"""Readers on tiny files in every format: good rows kept, bad ones counted, errors clear."""

import gzip

import numpy as np
import pytest

from reczero_jax.data.readers import DataError, read_source
from tests.data import sample_files


def _skips(report, reason):
    return sum(n for k, n in report.skipped.items() if k.endswith(reason))


@pytest.mark.parametrize("version", ["amazon2014", "amazon2018", "amazon2023"])
def test_amazon(tmp_path, version):
    path, meta = sample_files.write_amazon(tmp_path, version)
    data = read_source(version, str(path), str(meta))
    r, rep = data.ratings, data.report
    assert (len(r), r.num_users, r.num_items) == (12, 3, 4)
    assert _skips(rep, "malformed_line") == 2  # one in the reviews, one in the meta file
    assert _skips(rep, "rating_out_of_range") == 1
    assert _skips(rep, "bad_encoding") == 1
    assert sum(n for k, n in rep.skipped.items() if "missing_field" in k) == 1
    assert data.items["P0"].title == "Toy 0"
    assert rep.notes  # item P3 has no meta
    # timestamps in seconds (2023's milliseconds converted), canonical order
    assert r.timestamp.min() == sample_files.T0
    assert np.all(np.diff(r.timestamp) >= 0)
    row = int(np.flatnonzero((r.user_ids[r.user] == "U1") & (r.item_ids[r.item] == "P2"))[0])
    assert r.rating[row] == 1 + (1 + 2) % 5
    assert r.review[row] == "review by 1 of 2"
    assert r.summary[row] == "summary 12"


def test_amazon2014_meta_fields(tmp_path):
    path, meta = sample_files.write_amazon(tmp_path, "amazon2014")
    item = read_source("amazon2014", str(path), str(meta)).items["P1"]
    assert item.categories == ("Toys", "Cars") and item.price == "9.5"


def test_yelp(tmp_path):
    path, _ = sample_files.write_yelp(tmp_path)
    data = read_source("yelp", str(path))  # business file found beside the reviews
    rep = data.report
    assert (len(data.ratings), data.ratings.num_users, data.ratings.num_items) == (12, 3, 4)
    assert _skips(rep, "unknown_item") == 1
    assert _skips(rep, "rating_out_of_range") == 1
    assert _skips(rep, "missing_field:user") == 1
    assert _skips(rep, "malformed_line") == 1
    assert data.items["B2"].title == "Cafe 2" and data.items["B2"].price == "2 of 4"


@pytest.mark.parametrize("version", ["movielens100k", "movielens1m"])
def test_movielens(tmp_path, version):
    writer = getattr(sample_files, f"write_{version}")
    path, _ = writer(tmp_path)
    data = read_source(version, str(path))
    rep = data.report
    assert (len(data.ratings), data.ratings.num_users, data.ratings.num_items) == (12, 3, 4)
    assert _skips(rep, "unknown_item") == 1
    assert _skips(rep, "rating_out_of_range") == 1
    assert _skips(rep, "malformed_line") == 1
    assert _skips(rep, "missing_field:user") + _skips(rep, "missing_field:item") == 1
    title = data.items["1"].title
    assert (
        title.startswith("Caf\u00e9") if version == "movielens100k" else title == "Movie 0 (1999)"
    )
    assert set(data.ratings.review) == {""}


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    path, _ = sample_files.write_amazon(tmp_path, "amazon2018")
    blob = path.read_bytes()
    cut = tmp_path / "cut_5.json.gz"
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    data = read_source("amazon2018", str(cut))
    assert 0 < len(data.ratings) < 12
    assert _skips(data.report, "truncated_file") == 0  # reason carries the line number
    assert any("truncated_file" in k for k in data.report.skipped)


def test_missing_path_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.json.gz does not exist"):
        read_source("amazon2014", str(tmp_path / "nope.json.gz"))
    with pytest.raises(DataError, match="movies file"):
        (tmp_path / "ml").mkdir()
        (tmp_path / "ml" / "ratings.dat").write_text("1::1::3::5\n")
        read_source("movielens1m", str(tmp_path / "ml"))


def test_empty_result_is_an_error(tmp_path):
    path = tmp_path / "reviews_X_5.json.gz"
    path.write_bytes(gzip.compress(b'{"overall": 9}\nnot json\n'))
    with pytest.raises(DataError, match=r"reviews_X_5.json.gz: no usable rating"):
        read_source("amazon2014", str(path))


def test_same_rows_whatever_the_file_order(tmp_path):
    path, meta = sample_files.write_amazon(tmp_path, "amazon2018")
    lines = gzip.decompress(path.read_bytes()).splitlines()
    shuffled = tmp_path / "Shuffled_5.json.gz"
    shuffled.write_bytes(gzip.compress(b"\n".join(lines[::-1]) + b"\n"))
    a = read_source("amazon2018", str(path)).ratings
    b = read_source("amazon2018", str(shuffled)).ratings
    for col in ("user", "item", "rating", "timestamp", "review"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


def test_shared_amazon_file(shared_dir):
    path = shared_dir / "data" / "reviews_Musical_Instruments_5.json.gz"
    if not path.is_file():
        pytest.skip("shared Amazon file absent")
    data = read_source("amazon2014", str(path))
    r = data.ratings
    assert (len(r), r.num_users, r.num_items) == (10261, 1429, 900)
    assert data.report.num_skipped == 0
