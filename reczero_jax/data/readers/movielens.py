"""MovieLens 100K (``u.data`` tab-separated + ``u.item`` pipe-separated) and 1M
(``ratings.dat`` + ``movies.dat``, '::'-separated). Both are latin-1; neither has
review texts, so histories show titles and ratings only. Ratings of movies absent from
the movie file are skipped as 'unknown_item'.
"""

from __future__ import annotations

from etils import epath

from reczero_jax.data.errors import DataError
from reczero_jax.data.readers.common import RowCollector, iter_lines, require_file
from reczero_jax.data.tables import Item, ReadReport, SourceData
from reczero_jax.paths import as_path

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_LAYOUT = {  # version -> (ratings file, movies file, separator)
    "movielens100k": ("u.data", "u.item", "\t"),
    "movielens1m": ("ratings.dat", "movies.dat", "::"),
}


def _movies(path: epath.Path, version: str, report: ReadReport) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for _, line in iter_lines(path, report, encoding="latin-1"):
        parts = line.split("|") if version == "movielens100k" else line.split("::")
        if version == "movielens100k":
            if len(parts) < 5 + len(GENRES_100K):
                report.skip(path.name, "malformed_line")
                continue
            flags = parts[5 : 5 + len(GENRES_100K)]
            genres = tuple(g for g, f in zip(GENRES_100K, flags) if f.strip() == "1")
            desc = f"released {parts[2]}" if parts[2] else ""
        else:
            if len(parts) != 3:
                report.skip(path.name, "malformed_line")
                continue
            genres = tuple(g for g in parts[2].split("|") if g)
            desc = ""
        movie_id = parts[0].strip()
        if not movie_id:
            report.skip(path.name, "missing_field:movie_id")
            continue
        items[movie_id] = Item(
            movie_id, title=parts[1].strip(), categories=genres, description=desc
        )
    return items


def read_movielens(path: str, meta_path: str, version: str) -> SourceData:
    ratings_name, movies_name, sep = _LAYOUT[version]
    p = as_path(path)
    if not p.exists():
        raise DataError(f"MovieLens path {p} does not exist")
    ratings_file = require_file(p / ratings_name if p.is_dir() else p, f"{version} ratings file")
    movies_file = require_file(
        meta_path or ratings_file.parent / movies_name, f"{version} movies file"
    )
    report = ReadReport()
    items = _movies(movies_file, version, report)
    rows = RowCollector(ratings_file.name, report)
    for _, line in iter_lines(ratings_file, report, encoding="latin-1"):
        parts = line.split(sep)
        if len(parts) != 4:
            report.skip(ratings_file.name, "malformed_line")
            continue
        user, item, rating, ts = (x.strip() for x in parts)
        if item and item not in items:
            report.skip(ratings_file.name, "unknown_item")
            continue
        rows.add(user, item, rating, ts)
    return rows.finish(ratings_file, items)
