"""Local or remote paths: every path a user gives (the workdir, data files, checkpoint,
Hugging Face and tokenizer folders) goes through :func:`as_path`, an ``etils.epath.Path``,
so ``gs://bucket/run`` works wherever ``/local/run`` does. A local path behaves exactly as
a ``pathlib.Path`` (epath's local backend is ``os``); nothing here changes local behaviour.

Three things an object store (``gs://``, ``s3://``) cannot do are handled here, once:

* **local files for libraries that need them** (transformers' tokenizer loader, our
  memory-mapped safetensors reader): :func:`local_copy` returns a local folder holding the
  same files; for a local path that is the path itself, for a remote one a copy in a
  temporary folder, made once per process and removed when the process exits;
* **writers that produce a folder** (the Hugging Face export, the scratch tokenizer):
  :func:`writing_to` gives a local folder to write into; for a remote destination it is a
  temporary folder that is uploaded (:func:`upload`) and removed when the block ends;
* **append**: :class:`AppendFile` appends to a local file (mode ``'ab'``); a remote object
  cannot be appended to, so its content is held in memory (starting from what the object
  holds) and the whole object is rewritten on every :meth:`AppendFile.flush`.

A real bucket needs epath's backend for its scheme (``gcsfs`` through fsspec, or
TensorFlow), and Orbax needs ``google-cloud-storage`` for ``gs://`` checkpoint folders;
both are in ``requirements-gcs.txt``, not in ``requirements.txt``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from etils import epath

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 16 * 1024 * 1024
_COPIES: dict[tuple[str, tuple[str, ...] | None], pathlib.Path] = {}  # see local_copy
_TEMP_DIRS: list[str] = []


def as_path(path: str | os.PathLike) -> epath.Path:
    """``path`` as an ``epath.Path`` (``gs://...`` stays a URI; a local path is unchanged)."""
    return epath.Path(path)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI (``gs://``, ``s3://``...) rather than a local path."""
    return bool(_SCHEME.match(os.fspath(path)))


def absolute(path: str | os.PathLike) -> epath.Path:
    """``path`` made absolute (a URI already is; ``epath``'s ``absolute()`` would prefix the
    working directory to it)."""
    p = as_path(path)
    return p if is_remote(p) else p.absolute()


def _temp_dir(prefix: str) -> pathlib.Path:
    """A new local temporary folder, removed when the process exits."""
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])
    folder = tempfile.mkdtemp(prefix=prefix)
    _TEMP_DIRS.append(folder)
    return pathlib.Path(folder)


def _copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Streams one file across backends (local <-> remote)."""
    with as_path(src).open("rb") as f, as_path(dst).open("wb") as g:
        shutil.copyfileobj(f, g, _CHUNK)


def local_copy(path: str | os.PathLike, patterns: Sequence[str] | None = None) -> pathlib.Path:
    """A local path with the contents of ``path`` (a file or a folder).

    Local: ``path`` itself, nothing is copied or checked. Remote: a copy in a temporary
    folder (made once per process for each ``(path, patterns)``; removed at exit), of the
    whole folder tree, or with ``patterns`` only the folder's top-level files matching one
    of them (e.g. the small files of a Hugging Face folder, not its weights). Raises
    FileNotFoundError naming ``path`` when a remote path does not exist.
    """
    if not is_remote(path):
        return pathlib.Path(path)
    src = as_path(path)
    key = (str(src), None if patterns is None else tuple(patterns))
    if key in _COPIES:
        return _COPIES[key]
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    root = _temp_dir("reczero_copy_")
    if not src.is_dir():
        out = root / src.name
        _copy_file(src, out)
    else:
        out = root / (src.name or "root")
        out.mkdir()
        if patterns is not None:
            names = {f.name for pattern in patterns for f in src.glob(pattern)}
            for name in sorted(names):
                if not (src / name).is_dir():
                    _copy_file(src / name, out / name)
        else:
            for folder, _, files in src.walk():
                local = out / os.fspath(folder.relative_to(src))
                local.mkdir(parents=True, exist_ok=True)
                for name in files:
                    _copy_file(folder / name, local / name)
    _COPIES[key] = out
    return out


def upload(local_dir: str | os.PathLike, destination: str | os.PathLike) -> epath.Path:
    """Copies the local folder ``local_dir`` (its whole tree) into ``destination``, replacing
    files of the same name; a no-op when both are the same folder."""
    src, dst = pathlib.Path(local_dir), as_path(destination)
    if not is_remote(dst) and src.resolve() == pathlib.Path(dst).resolve():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for folder, _, files in os.walk(src):
        target = dst / pathlib.Path(folder).relative_to(src).as_posix()
        target.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            _copy_file(pathlib.Path(folder) / name, target / name)
    return dst


@contextlib.contextmanager
def writing_to(destination: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A local folder to write what belongs in ``destination``: ``destination`` itself when
    it is local (not created here), else a temporary folder uploaded to it when the block
    ends without an error, and removed in any case."""
    if not is_remote(destination):
        yield pathlib.Path(destination)
        return
    staging = pathlib.Path(tempfile.mkdtemp(prefix="reczero_upload_"))
    try:
        yield staging
        upload(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class AppendFile:
    """A binary file written only at its end.

    Local: opened with mode ``'ab'`` (``exclusive``: ``'xb'``), ``flush`` flushes the OS
    file. Remote (an object store has no append): the content is kept in memory, starting
    from the object's current content (``exclusive``: the object must not exist), and
    ``flush`` rewrites the whole object when something was added since the last one. Each
    rewrite holds the previous content as its prefix, so a reader sees a file that only grows.
    """

    def __init__(self, path: str | os.PathLike, exclusive: bool = False):
        self.path = as_path(path)
        self.remote = is_remote(self.path)
        self._file = None
        self._data: bytearray | None = None
        self._dirty = False
        if not self.remote:
            self._file = open(self.path, "xb" if exclusive else "ab")  # noqa: SIM115
            return
        exists = self.path.exists()
        if exclusive and exists:
            raise FileExistsError(f"{self.path} already exists")
        self._data = bytearray(self.path.read_bytes() if exists else b"")
        self._dirty = exclusive or not exists  # create the object at the first flush

    @property
    def closed(self) -> bool:
        return self._file is None and self._data is None

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        if self._file is not None:
            self._file.write(data)
        else:
            self._data += data
            self._dirty = True

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        elif self._data is not None and self._dirty:
            self.path.write_bytes(bytes(self._data))
            self._dirty = False

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self.closed:
            return
        self.flush()
        if self._file is not None:
            self._file.close()
        self._file = self._data = None
