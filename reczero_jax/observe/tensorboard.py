"""A dependency-free TensorBoard event-file writer (scalars only) and a checking reader.

TensorBoard reads ``events.out.tfevents.*`` files: a sequence of TFRecords, each holding one
serialized ``tensorflow.Event`` protobuf. Neither TensorFlow nor the ``tensorboard`` package is
needed to write them; this module hand-encodes the few messages involved.

TFRecord framing (all integers little-endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
    masked_crc(x) = ((crc >> 15 | crc << 17) + 0xA282EAD8) mod 2**32      (CRC32C = Castagnoli)

Protobuf messages written (field number, wire type)::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The first record of a file carries ``file_version = "brain.Event:2"``; every later record carries
one scalar summary. ``read_scalars`` parses the same subset back, checking both CRCs of every
record (it is meant for tests and quick inspection, not as a general protobuf decoder).

The log folder may be local or remote (:mod:`reczero_jax.paths`). Each writer owns one new
event file, written through :class:`reczero_jax.paths.AppendFile`: appended to when local; on an
object store (``gs://``, no append) its records are kept in memory and the whole file is
rewritten at each ``flush``, every version holding the previous one as its prefix, so
TensorBoard, which reads event files incrementally, sees a file that only grows. A remote file
thus costs one upload of its whole size per flush (records are about 60 bytes per scalar);
the metric writer flushes a remote one at most every few seconds.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from etils import epath

from reczero_jax.paths import AppendFile, as_path

FILE_VERSION = "brain.Event:2"
_FILE_GLOB = "*tfevents*"


# ---------------------------------------------------------------------------------------------
# CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table driven.
# ---------------------------------------------------------------------------------------------
def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus a constant, mod 2**32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """``data`` wrapped as one TFRecord (length, its masked CRC, data, the data's masked CRC)."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


# ---------------------------------------------------------------------------------------------
# Protobuf encoding of the few messages we need.
# ---------------------------------------------------------------------------------------------
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    """Base-128 varint; negative int64 values are encoded as their 64-bit two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(payload)) + payload


def encode_event(
    wall_time: float,
    step: int,
    *,
    file_version: str | None = None,
    scalars: list[tuple[str, float]] | None = None,
) -> bytes:
    """Serialize one ``Event`` with an optional ``file_version`` and scalar ``Summary``."""
    out = _key(1, _FIXED64) + struct.pack("<d", wall_time) + _key(2, _VARINT) + _varint(step)
    if file_version is not None:
        out += _len_field(3, file_version.encode("utf-8"))
    if scalars:
        values = b"".join(
            _len_field(1, _len_field(1, tag.encode("utf-8")) + _key(2, _FIXED32) + _f32(v))
            for tag, v in scalars
        )
        out += _len_field(5, values)
    return out


def _f32(value: float) -> bytes:
    return struct.pack("<f", value)


# ---------------------------------------------------------------------------------------------
# Writer.
# ---------------------------------------------------------------------------------------------
class EventFileWriter:
    """Appends scalar summaries to a new ``events.out.tfevents.<time>.<host>`` file in ``logdir``
    (local or remote, module docstring).

    Usage::

        w = EventFileWriter("runs/x/tensorboard")
        w.scalar("reward/mean", 0.42, step=10)
        w.flush()   # make the records visible to TensorBoard now
        w.close()

    Records are buffered (by the OS file object, or in memory for a remote file); ``flush``
    pushes them to disk or to the object store. Non-finite values
    are written as they are (TensorBoard shows NaN/inf); filter them before if unwanted.
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = as_path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        base = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        path = self.logdir / base
        suffix = 0
        while path.exists():  # two writers started in the same second: never share a file
            suffix += 1
            path = self.logdir / f"{base}.{suffix}"
        self.path = path
        self._file: AppendFile | None = AppendFile(path, exclusive=True)  # closed in close()
        self._write(encode_event(time.time(), 0, file_version=FILE_VERSION))
        self.flush()

    def _write(self, event: bytes) -> None:
        if self._file is None:
            raise ValueError(f"EventFileWriter for {self.path} is closed")
        self._file.write(frame_record(event))

    def scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Write one scalar ``value`` (stored as float32) under ``tag`` at ``step``."""
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        t = time.time() if wall_time is None else float(wall_time)
        self._write(encode_event(t, int(step), scalars=[(tag, float(value))]))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # flushes
            self._file = None

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reader (checks CRCs; decodes only the subset written above).
# ---------------------------------------------------------------------------------------------
class CorruptRecordError(ValueError):
    """An event file whose framing or checksums do not match."""


def iter_records(path: str | os.PathLike):
    """Yield the payload of every TFRecord in ``path``, verifying both masked CRCs."""
    data = as_path(path).read_bytes()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise CorruptRecordError(f"{path}: truncated record header at byte {pos}")
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if masked_crc32c(length_bytes) != length_crc:
            raise CorruptRecordError(f"{path}: bad length CRC at byte {pos}")
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            raise CorruptRecordError(f"{path}: truncated record at byte {pos}")
        payload = data[start:end]
        (data_crc,) = struct.unpack("<I", data[end : end + 4])
        if masked_crc32c(payload) != data_crc:
            raise CorruptRecordError(f"{path}: bad data CRC in record at byte {pos}")
        yield payload
        pos = end + 4


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field_number, wire_type, value) for a serialized message; LEN values are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == _LEN:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        else:
            raise CorruptRecordError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def decode_event(buf: bytes) -> dict:
    """Decode an ``Event`` into ``{'wall_time', 'step', 'file_version'?, 'scalars': [...]}``."""
    event: dict = {"wall_time": 0.0, "step": 0, "scalars": []}
    for field, _, value in _fields(buf):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3:
            event["file_version"] = value.decode("utf-8")
        elif field == 5:
            for vfield, _, vbuf in _fields(value):
                if vfield != 1:
                    continue
                tag, simple = None, None
                for f, _, x in _fields(vbuf):
                    if f == 1:
                        tag = x.decode("utf-8")
                    elif f == 2:
                        simple = struct.unpack("<f", x)[0]
                if tag is not None and simple is not None:
                    event["scalars"].append((tag, simple))
    return event


def event_files(path_or_dir: str | os.PathLike) -> list[epath.Path]:
    """The event files at ``path_or_dir``: the file itself, or a directory's ``*tfevents*``."""
    p = as_path(path_or_dir)
    if p.is_dir():
        return sorted(p.glob(_FILE_GLOB))
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"no event file or directory at {p}")


def read_scalars(path_or_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """All scalars in an event file (or every event file of a directory, in name order).

    Returns ``{tag: [(step, value), ...]}`` in file order; values are the float32 written,
    returned as Python floats. Raises ``CorruptRecordError`` on a CRC or framing mismatch and
    ``ValueError`` when a file does not start with the ``brain.Event:2`` version record.
    """
    out: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(path_or_dir):
        for i, payload in enumerate(iter_records(path)):
            event = decode_event(payload)
            if i == 0 and event.get("file_version") != FILE_VERSION:
                raise ValueError(f"{path}: first record is not a {FILE_VERSION} version event")
            for tag, value in event["scalars"]:
                out.setdefault(tag, []).append((event["step"], value))
    return out
