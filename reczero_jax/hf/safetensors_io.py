"""Our own ``.safetensors`` reader and writer (no torch needed, bf16 via ml_dtypes).

File layout (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 ``N``,
then ``N`` bytes of JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}``, then the raw little-endian, C-ordered tensor bytes; offsets are
relative to the end of the header.

Reading memory-maps each file once and hands out zero-copy numpy views, so a caller that
slices a view (``ref.array()[3:5]``) touches only those pages. A checkpoint folder holds
either one ``model.safetensors`` or shards listed by ``model.safetensors.index.json``.

Writing is planned before any data is produced: ``plan_shards`` assigns tensors to files,
``SafetensorsFileWriter`` writes a file's header and then accepts tensors by name, in any
order, so an exporter can gather one parameter at a time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import struct
from collections.abc import Iterable, Mapping

import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 4 * 1000**3  # 4 GB, transformers' "4GB"
MAX_HEADER_BYTES = 100 * 1024**2  # the safetensors library's limit
MAX_DIMS = 32  # numpy's limit (numpy 1.x)
_MAX_BYTES = 2**63 - 1  # numpy's largest array, in bytes

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A file or folder that is not a valid safetensors checkpoint."""


def dtype_code(dtype) -> str:
    """The safetensors dtype string ('F32', 'BF16', ...) of a numpy dtype."""
    dt = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).byteorder == ">" else np.dtype(dtype)
    if dt not in _CODES:
        raise SafetensorsError(f"dtype {dt} has no safetensors code")
    return _CODES[dt]


# ----------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class TensorRef:
    """One tensor of a checkpoint, not yet read.

    Attributes:
      name: the tensor's name in the header.
      file: the .safetensors file holding it.
      dtype: numpy dtype of the stored data.
      shape: stored shape.
      start, end: byte range inside the file (absolute, header included).
    """

    name: str
    file: pathlib.Path
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int
    end: int
    _reader: SafetensorsFile = dataclasses.field(repr=False, compare=False)

    def array(self) -> np.ndarray:
        """A read-only zero-copy view (memory-mapped); slice it to read only a part."""
        return self._reader.view(self)


class SafetensorsFile:
    """One memory-mapped ``.safetensors`` file: ``refs`` by name, ``metadata``.

    The header is validated whole before anything is read (:func:`parse_header`); any
    problem raises SafetensorsError naming the file and, where one is at fault, the tensor.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                raw_len = f.read(8)
                if len(raw_len) < 8:
                    raise SafetensorsError(
                        f"{self.path}: too short to be a safetensors file ({size} bytes; "
                        "expected an 8-byte header length, a JSON header and the tensor data)"
                    )
                (header_len,) = struct.unpack("<Q", raw_len)
                if header_len > size - 8:
                    raise SafetensorsError(
                        f"{self.path}: bad header length {header_len}: the file holds only "
                        f"{size - 8} bytes after it (truncated, or not a safetensors file)"
                    )
                if header_len > MAX_HEADER_BYTES:
                    raise SafetensorsError(
                        f"{self.path}: bad header length {header_len} (above the "
                        f"{MAX_HEADER_BYTES} bytes safetensors allows)"
                    )
                raw_header = f.read(header_len)
        except FileNotFoundError:
            raise SafetensorsError(f"{self.path} does not exist") from None
        except OSError as e:
            raise SafetensorsError(f"{self.path}: cannot be read ({e.strerror or e})") from None
        if len(raw_header) < header_len:
            raise SafetensorsError(f"{self.path}: the file ends inside its header")
        base = 8 + header_len
        self.metadata, entries = parse_header(raw_header, size - base, self.path)
        self.refs: dict[str, TensorRef] = {
            name: TensorRef(name, self.path, dtype, shape, base + begin, base + end, self)
            for name, (dtype, shape, begin, end) in entries.items()
        }
        self._mmap: np.memmap | None = None

    def view(self, ref: TensorRef) -> np.ndarray:
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mmap[ref.start : ref.end].view(ref.dtype).reshape(ref.shape)


def _name(name: str) -> str:
    """A tensor name for a one-line message (quoted, escaped, long ones shortened)."""
    text = repr(name)
    return text if len(text) <= 80 else text[:60] + "..." + text[-17:]


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an int"}


def _kind(value) -> str:
    """What a JSON value is, for messages ('a list', 'null'...)."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse_header(
    raw: bytes, data_len: int, path: str | pathlib.Path = "<header>"
) -> tuple[dict[str, str], dict[str, tuple[np.dtype, tuple[int, ...], int, int]]]:
    """Validates a safetensors JSON header (the bytes between the length and the data).

    Checks: UTF-8 JSON holding one object (no key twice); ``__metadata__`` absent, null or
    a str -> str map; every other entry an object with a known ``dtype`` string, a
    ``shape`` list of non-negative ints and ``data_offsets`` ``[begin, end]``, ints with
    ``0 <= begin <= end <= data_len``; ``end - begin == prod(shape) * itemsize``; no two
    tensors share a byte.

    Returns (metadata, {name: (dtype, shape, begin, end)}) with offsets relative to the
    data section. Raises SafetensorsError naming ``path`` and the tensor at fault.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(
            f"{path}: header is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    try:
        header = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as e:
        raise SafetensorsError(f"{path}: header names {_name(e.args[0])} twice") from None
    except ValueError as e:  # JSONDecodeError, or an int of too many digits
        raise SafetensorsError(f"{path}: header is not JSON ({e})") from None
    except RecursionError:
        raise SafetensorsError(f"{path}: header is not JSON (nested too deeply)") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is {_kind(header)}, expected a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise SafetensorsError(
            f"{path}: header's __metadata__ is {_kind(metadata)}, expected an object of strings"
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise SafetensorsError(
                f"{path}: header's __metadata__[{_name(key)}] is {_kind(value)}, expected a string"
            )
    entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
    for name, info in header.items():
        entries[name] = _parse_entry(name, info, data_len, path)
    spans = sorted((b, e, n) for n, (_, _, b, e) in entries.items() if e > b)
    for (_, prev_end, prev), (begin, _, name) in zip(spans, spans[1:]):
        if begin < prev_end:
            raise SafetensorsError(
                f"{path}: tensor {_name(name)} overlaps tensor {_name(prev)}: its data starts "
                f"at {begin}, before the other's ends at {prev_end}"
            )
    return metadata, entries


def _parse_entry(
    name: str, info, data_len: int, path
) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """One tensor's header entry, validated (see :func:`parse_header`)."""
    where = f"{path}: tensor {_name(name)}"
    if not isinstance(info, dict):
        raise SafetensorsError(
            f"{where}: entry is {_kind(info)}, expected an object with dtype, shape and "
            "data_offsets"
        )
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise SafetensorsError(f"{where}: entry has no {key!r}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in _DTYPES:
        shown = _name(code) if isinstance(code, str) else _kind(code)
        raise SafetensorsError(f"{where}: dtype {shown} is not one of {sorted(_DTYPES)}")
    dtype = _DTYPES[code]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise SafetensorsError(f"{where}: shape must be a list of non-negative ints")
    if len(shape) > MAX_DIMS:
        raise SafetensorsError(f"{where}: shape has {len(shape)} dimensions (at most {MAX_DIMS})")
    if math.prod(d for d in shape if d) * dtype.itemsize > _MAX_BYTES:
        raise SafetensorsError(f"{where}: shape {shape} of {code} is too large")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise SafetensorsError(f"{where}: data_offsets must be a list of two ints [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise SafetensorsError(
            f"{where}: data_offsets [{begin}, {end}] must satisfy 0 <= begin <= end"
        )
    if end > data_len:
        raise SafetensorsError(
            f"{where}: data_offsets [{begin}, {end}] do not fit the data section of {data_len} "
            "bytes (the file is truncated, or the offsets are wrong)"
        )
    need = math.prod(shape) * dtype.itemsize
    if end - begin != need:
        raise SafetensorsError(
            f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes, but shape "
            f"{shape} of {code} needs {need}; offsets that do not fit the shape"
        )
    return dtype, tuple(shape), begin, end


class SafetensorsCheckpoint:
    """All tensors of a Hugging Face checkpoint folder (single file or sharded with index).

    ``refs`` maps tensor name to ``TensorRef``; ``files`` lists the opened files.
    """

    def __init__(self, folder: str | pathlib.Path):
        self.folder = pathlib.Path(folder)
        if not self.folder.exists():
            raise SafetensorsError(
                f"{self.folder} does not exist (expected a checkpoint folder holding "
                f"{SINGLE_FILE}, or {INDEX_FILE} and its shards)"
            )
        if not self.folder.is_dir():
            raise SafetensorsError(f"{self.folder} is not a folder")
        index = self.folder / INDEX_FILE
        if index.is_file():
            weight_map = read_index(index)
            file_names = sorted(set(weight_map.values()))
        elif (self.folder / SINGLE_FILE).is_file():
            weight_map, file_names = None, [SINGLE_FILE]
        else:
            raise SafetensorsError(f"{self.folder} holds neither {SINGLE_FILE} nor {INDEX_FILE}")
        self.files: list[SafetensorsFile] = []
        self.refs: dict[str, TensorRef] = {}
        for file_name in file_names:
            path = self.folder / file_name
            if not path.is_file():
                raise SafetensorsError(f"{index} names {file_name}, which does not exist")
            st = SafetensorsFile(path)
            self.files.append(st)
            for name, ref in st.refs.items():
                if weight_map is not None and weight_map.get(name) != file_name:
                    continue  # the index is authoritative
                self.refs[name] = ref
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self.refs))
            if missing:
                raise SafetensorsError(
                    f"{index} lists {missing[0]!r} in {weight_map[missing[0]]}, which lacks it"
                )

    def __contains__(self, name: str) -> bool:
        return name in self.refs

    def __getitem__(self, name: str) -> TensorRef:
        return self.refs[name]


def read_index(index: pathlib.Path) -> dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file name) of ``model.safetensors.index.json``,
    validated; SafetensorsError naming the index otherwise."""
    try:
        data = json.loads(index.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: JSON or UTF-8
        raise SafetensorsError(f"{index}: not a valid index ({type(e).__name__}: {e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise SafetensorsError(
            f"{index}: not a valid index (expected a JSON object with a 'weight_map' object)"
        )
    for name, file_name in weight_map.items():
        if (
            not isinstance(file_name, str)
            or not file_name
            or file_name != pathlib.Path(file_name).name
        ):
            raise SafetensorsError(
                f"{index}: tensor {_name(name)} maps to {file_name!r}, expected the name of a "
                "file in the same folder"
            )
    return weight_map


def load_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Reads every tensor of one file or checkpoint folder into memory (copies)."""
    path = pathlib.Path(path)
    refs = SafetensorsCheckpoint(path).refs if path.is_dir() else SafetensorsFile(path).refs
    return {name: np.array(ref.array()) for name, ref in refs.items()}


# ----------------------------------------------------------------------------- writing
@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a tensor to write (no data)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


class SafetensorsFileWriter:
    """Writes one file: the header at construction, then each tensor's bytes by name.

    Usage::

        with SafetensorsFileWriter(path, specs) as w:
            for spec in specs:
                w.write(spec.name, array)

    Closing checks that every planned tensor was written.
    """

    def __init__(
        self,
        path: str | pathlib.Path,
        specs: Iterable[TensorSpec],
        metadata: Mapping[str, str] | None = None,
    ):
        self.path = pathlib.Path(path)
        self.specs = {s.name: s for s in specs}
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._offsets: dict[str, int] = {}
        for name, spec in self.specs.items():
            header[name] = {
                "dtype": dtype_code(spec.dtype),
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + spec.nbytes],
            }
            self._offsets[name] = offset
            offset += spec.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned
        self._base = 8 + len(blob)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(struct.pack("<Q", len(blob)) + blob)
        self._file.truncate(self._base + offset)
        self._written: set[str] = set()

    def write(self, name: str, array: np.ndarray) -> None:
        spec = self.specs[name]
        arr = np.asarray(array)
        if arr.shape != tuple(spec.shape) or arr.dtype != np.dtype(spec.dtype):
            raise SafetensorsError(
                f"{name}: got {arr.dtype}{list(arr.shape)}, planned {spec.dtype}{list(spec.shape)}"
            )
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        self._file.seek(self._base + self._offsets[name])
        self._file.write(np.ascontiguousarray(arr).tobytes())
        self._written.add(name)

    def close(self) -> None:
        self._file.close()
        missing = sorted(set(self.specs) - self._written)
        if missing:
            raise SafetensorsError(f"{self.path}: tensors never written: {missing[:5]}")

    def __enter__(self) -> SafetensorsFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()


def save_safetensors(
    path: str | pathlib.Path,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Writes ``tensors`` to one ``.safetensors`` file (default metadata ``{'format': 'pt'}``)."""
    arrays = {name: np.asarray(a) for name, a in tensors.items()}
    specs = [TensorSpec(name, a.shape, a.dtype) for name, a in arrays.items()]
    with SafetensorsFileWriter(
        path, specs, {"format": "pt"} if metadata is None else metadata
    ) as w:
        for name, a in arrays.items():
            w.write(name, a)


def plan_shards(
    specs: Iterable[TensorSpec], max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> list[list[TensorSpec]]:
    """Splits tensors, in order, into files of at most ``max_shard_bytes`` (a larger single
    tensor gets a file of its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards


def shard_file_names(num_shards: int) -> list[str]:
    """transformers' names: ``model.safetensors`` or ``model-0000k-of-0000n.safetensors``."""
    if num_shards == 1:
        return [SINGLE_FILE]
    return [f"model-{k + 1:05d}-of-{num_shards:05d}.safetensors" for k in range(num_shards)]


def write_index(folder: str | pathlib.Path, shards: list[list[TensorSpec]]) -> None:
    """Writes ``model.safetensors.index.json`` for a multi-file plan."""
    names = shard_file_names(len(shards))
    weight_map = {s.name: names[k] for k, shard in enumerate(shards) for s in shard}
    total = sum(s.nbytes for shard in shards for s in shard)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (pathlib.Path(folder) / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def save_sharded_safetensors(
    folder: str | pathlib.Path,
    tensors: Mapping[str, np.ndarray],
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Writes ``tensors`` into ``folder`` as one file, or as shards plus an index when they
    exceed ``max_shard_bytes``. Returns the file names written."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(a) for name, a in tensors.items()}
    shards = plan_shards(
        [TensorSpec(n, a.shape, a.dtype) for n, a in arrays.items()], max_shard_bytes
    )
    names = shard_file_names(len(shards))
    meta = {"format": "pt"} if metadata is None else metadata
    for file_name, shard in zip(names, shards):
        with SafetensorsFileWriter(folder / file_name, shard, meta) as w:
            for spec in shard:
                w.write(spec.name, arrays[spec.name])
    if len(shards) > 1:
        write_index(folder, shards)
    return names
