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
    """One memory-mapped ``.safetensors`` file: ``refs`` by name, ``metadata``."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise SafetensorsError(f"{self.path}: too short to be a safetensors file")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > size - 8 or header_len > 100 * 1024**2:
                raise SafetensorsError(f"{self.path}: bad header length {header_len}")
            try:
                header = json.loads(f.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise SafetensorsError(f"{self.path}: header is not JSON ({e})") from None
        base = 8 + header_len
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self.refs: dict[str, TensorRef] = {}
        for name, info in header.items():
            try:
                dtype = _DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except KeyError as e:
                raise SafetensorsError(f"{self.path}: tensor {name!r}: bad entry {e}") from None
            if end - begin != math.prod(shape) * dtype.itemsize or base + end > size:
                raise SafetensorsError(
                    f"{self.path}: tensor {name!r} has offsets {begin}..{end} that do not fit "
                    f"shape {shape} of {info['dtype']} in a file of {size} bytes"
                )
            self.refs[name] = TensorRef(
                name, self.path, dtype, shape, base + begin, base + end, self
            )
        self._mmap: np.memmap | None = None

    def view(self, ref: TensorRef) -> np.ndarray:
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mmap[ref.start : ref.end].view(ref.dtype).reshape(ref.shape)


class SafetensorsCheckpoint:
    """All tensors of a Hugging Face checkpoint folder (single file or sharded with index).

    ``refs`` maps tensor name to ``TensorRef``; ``files`` lists the opened files.
    """

    def __init__(self, folder: str | pathlib.Path):
        self.folder = pathlib.Path(folder)
        if not self.folder.is_dir():
            raise SafetensorsError(f"{self.folder} is not a folder")
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise SafetensorsError(f"{index}: not a valid index ({e!r})") from None
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
