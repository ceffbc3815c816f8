"""The safetensors header parser against any header: a file either loads (every tensor inside
the data section, no two sharing a byte, each readable with its shape) or raises
SafetensorsError, one line naming the file; never another exception. Valid files always
load, with their bytes."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from reczero_jax.hf import safetensors_io as st

FUZZ = settings(max_examples=120, deadline=None)
CODES = sorted(st._DTYPES)
FILE_NAME = "fuzzed-model.safetensors"


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / FILE_NAME


# ----------------------------------------------------------------------------- files
def file_bytes(header: bytes, data: bytes, header_len: int | None = None) -> bytes:
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header + data


def dump(header) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def outcome(path, content: bytes) -> st.SafetensorsFile | None:
    """Writes ``content`` and opens it: the file, or None after a SafetensorsError that is
    one line naming it; any other exception fails the test."""
    path.write_bytes(content)
    try:
        f = st.SafetensorsFile(path)
    except st.SafetensorsError as e:
        message = str(e)
        assert str(path) in message, message
        assert "\n" not in message, message
        return None
    size = len(content)
    spans = []
    for name, ref in f.refs.items():
        assert ref.name == name and 8 <= ref.start <= ref.end <= size
        array = ref.array()
        assert array.shape == ref.shape and array.dtype == ref.dtype
        assert array.nbytes == ref.end - ref.start
        if ref.end > ref.start:
            spans.append((ref.start, ref.end))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in f.metadata.items())
    return f


# ----------------------------------------------------------------------------- strategies
INTS = hs.integers() | hs.sampled_from([-1, 0, 1, 2**31, 2**63 - 1, 2**63, 2**64, 2**64 + 7])
SCALARS = hs.none() | hs.booleans() | INTS | hs.floats() | hs.text(max_size=12)
JSON = hs.recursive(
    SCALARS,
    lambda inner: (
        hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = hs.text(min_size=0, max_size=10).filter(lambda n: n != "__metadata__")


@hs.composite
def valid_files(draw):
    """(file bytes, {name: (code, shape, raw bytes)}, metadata): tensors in any order, with
    gaps between them, a header padded with spaces, optional metadata."""
    names = draw(hs.lists(NAMES, unique=True, max_size=5))
    tensors = {}
    for name in names:
        code = draw(hs.sampled_from(CODES))
        shape = draw(hs.lists(hs.integers(0, 4), max_size=3))
        nbytes = math.prod(shape) * st._DTYPES[code].itemsize
        tensors[name] = (code, shape, draw(hs.binary(min_size=nbytes, max_size=nbytes)))
    order = draw(hs.permutations(names))
    header: dict = {}
    metadata = draw(hs.none() | hs.dictionaries(hs.text(max_size=6), hs.text(max_size=6)))
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name in order:
        data += b"\0" * draw(hs.integers(0, 9))  # a gap
        code, shape, raw = tensors[name]
        header[name] = {
            "dtype": code,
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    data += b"\0" * draw(hs.integers(0, 9))
    blob = dump(header) + b" " * draw(hs.integers(0, 16))
    return file_bytes(blob, data), tensors, metadata or {}


@given(valid_files())
@FUZZ
def test_valid_files_always_load(path, spec):
    content, tensors, metadata = spec
    f = outcome(path, content)
    assert f is not None, "a valid file was rejected"
    assert f.metadata == metadata and set(f.refs) == set(tensors)
    for name, (code, shape, raw) in tensors.items():
        ref = f.refs[name]
        assert ref.dtype == st._DTYPES[code] and ref.shape == tuple(shape)
        assert ref.array().tobytes() == raw


@given(hs.dictionaries(hs.text(max_size=6), hs.sampled_from(CODES), max_size=4), hs.data())
@FUZZ
def test_files_we_write_load(path, dtypes, data):
    tensors = {}
    for name, code in dtypes.items():
        shape = tuple(data.draw(hs.lists(hs.integers(0, 3), max_size=3)))
        nbytes = math.prod(shape) * st._DTYPES[code].itemsize
        raw = data.draw(hs.binary(min_size=nbytes, max_size=nbytes))
        tensors[name] = np.frombuffer(raw, st._DTYPES[code]).reshape(shape)
    st.save_safetensors(path, tensors)
    loaded = st.load_safetensors(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        assert loaded[name].tobytes() == value.tobytes()


def test_files_the_safetensors_library_writes_load(path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "i8": rng.integers(-100, 100, (2, 2, 2)).astype(np.int8),
        "u64": rng.integers(0, 2**40, (4,)).astype(np.uint64),
        "bool": rng.integers(0, 2, (3,)).astype(bool),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5, np.float64),
    }
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    f = outcome(path, path.read_bytes())
    assert f is not None and f.metadata == {"format": "np"}
    for name, value in tensors.items():
        np.testing.assert_array_equal(f.refs[name].array(), value)


# ----------------------------------------------------------------------------- fuzzing
@given(JSON, hs.binary(max_size=48))
@FUZZ
def test_any_json_header(path, header, data):
    outcome(path, file_bytes(dump(header), data))


@given(hs.dictionaries(NAMES, JSON, max_size=4), hs.binary(max_size=48))
@FUZZ
def test_any_object_of_entries(path, header, data):
    outcome(path, file_bytes(dump(header), data))


@given(hs.binary(max_size=80))
@FUZZ
def test_any_bytes(path, content):
    outcome(path, content)


@given(hs.binary(max_size=64), hs.binary(max_size=32))
@FUZZ
def test_any_header_bytes(path, header, data):
    outcome(path, file_bytes(header, data))


def _pristine(entry) -> bool:
    """Whether ``entry`` still has the valid entry's layout."""
    return (
        isinstance(entry, dict)
        and {"dtype", "shape"} <= set(entry)
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and all(isinstance(o, int) for o in entry["data_offsets"])
    )


def _mutate(draw, header: dict, names: list[str]) -> dict:
    """One mutation of a valid header: a wrong type, a bad offset, an overlap, a missing
    key, a bad dtype or shape, bad metadata."""
    kind = draw(hs.sampled_from(
        ["entry", "field", "drop", "offsets", "overlap", "shift", "shape", "dtype", "metadata"]
    ))  # fmt: skip
    if kind == "metadata":
        if draw(hs.booleans()):
            header["__metadata__"] = draw(JSON)
        else:
            header["__metadata__"] = {draw(hs.text(max_size=4)): draw(JSON)}
        return header
    if not names:
        header[draw(NAMES)] = draw(JSON)
        return header
    name = draw(hs.sampled_from(names))
    entry = header.get(name)
    if not _pristine(entry) or not _pristine(header.get(names[0])):
        kind = "entry"  # an earlier mutation broke it: replace it whole
    if kind == "entry":
        header[name] = draw(JSON)
    elif kind == "field":
        entry[draw(hs.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(JSON)
    elif kind == "drop":
        entry.pop(draw(hs.sampled_from(["dtype", "shape", "data_offsets"])))
    elif kind == "offsets":
        entry["data_offsets"][draw(hs.integers(0, 1))] = draw(INTS)
    elif kind == "overlap":  # another tensor's range, or one starting inside it
        other = header[names[0]]
        begin = other["data_offsets"][0] + draw(hs.integers(0, 3))
        size = entry["data_offsets"][1] - entry["data_offsets"][0]
        entry["data_offsets"] = [begin, begin + size]
    elif kind == "shift":
        delta = draw(hs.integers(-16, 16))
        entry["data_offsets"] = [o + delta for o in entry["data_offsets"]]
    elif kind == "shape":
        entry["shape"] = draw(hs.lists(INTS, max_size=4) | hs.lists(JSON, max_size=3))
    else:
        entry["dtype"] = draw(hs.text(max_size=5) | hs.sampled_from([c.lower() for c in CODES]))
    return header


@given(valid_files(), hs.data())
@FUZZ
def test_mutated_valid_headers(path, spec, data):
    content, tensors, _ = spec
    (header_len,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + header_len])
    payload = content[8 + header_len :]
    names = list(tensors)
    for _ in range(data.draw(hs.integers(1, 3))):
        header = _mutate(data.draw, header, names)
        if not isinstance(header, dict):
            break
    blob = dump(header)
    if data.draw(hs.booleans()) and names:  # the same name twice
        blob = blob[:-1] + b"," + dump({names[0]: header.get(names[0])})[1:]
    out = file_bytes(blob, payload)
    cut = data.draw(hs.sampled_from(["none", "truncate", "length", "flip"]))
    if cut == "truncate":
        out = out[: data.draw(hs.integers(0, len(out)))]
    elif cut == "length":
        out = struct.pack("<Q", data.draw(hs.integers(0, 2**64 - 1))) + out[8:]
    elif cut == "flip" and len(out) > 8:
        k = data.draw(hs.integers(8, len(out) - 1))
        out = out[:k] + bytes([out[k] ^ data.draw(hs.integers(1, 255))]) + out[k + 1 :]
    outcome(path, out)


# ----------------------------------------------------------------------------- named cases
def _one_line_error(path, header, data=b"\0" * 64) -> str:
    path.write_bytes(file_bytes(dump(header), data))
    with pytest.raises(st.SafetensorsError) as info:
        st.SafetensorsFile(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_entry_that_is_not_an_object_names_the_tensor(path):
    message = _one_line_error(path, {"w": [1, 2, 3]})
    assert "tensor 'w'" in message and "expected an object" in message


def test_overlapping_tensors_name_both(path):
    f32 = {"dtype": "F32", "shape": [4]}
    header = {"a": {**f32, "data_offsets": [0, 16]}, "b": {**f32, "data_offsets": [8, 24]}}
    message = _one_line_error(path, header)
    assert "'b' overlaps tensor 'a'" in message


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}, "dtype 'F99'"),
        ({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}, "non-negative ints"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "non-negative ints"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "non-negative ints"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}, "0 <= begin <= end"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [2**64, 2**64 + 4]}, "do not fit"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "needs 8"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "two ints"),
        ({"dtype": "F32", "shape": [1]}, "no 'data_offsets'"),
        ({"dtype": "U8", "shape": [0, 2**62, 4], "data_offsets": [0, 0]}, "too large"),
    ],
)
def test_bad_entries_name_file_and_tensor(path, entry, words):
    message = _one_line_error(path, {"t.weight": entry})
    assert "tensor 't.weight'" in message and words in message


@pytest.mark.parametrize(
    "header, words",
    [
        ([1, 2], "header is a list, expected a JSON object"),
        ({"__metadata__": {"format": 1}}, "__metadata__['format'] is an int"),
        ({"__metadata__": ["pt"]}, "__metadata__ is a list"),
    ],
)
def test_bad_headers_name_the_file(path, header, words):
    assert words in _one_line_error(path, header)


def test_header_bytes_that_are_not_utf8_json(path):
    path.write_bytes(file_bytes(b'{"a": "\xff"}', b""))
    with pytest.raises(st.SafetensorsError, match="not UTF-8"):
        st.SafetensorsFile(path)
    path.write_bytes(file_bytes(b'{"a": {}, "a": {}}', b""))
    with pytest.raises(st.SafetensorsError, match="names 'a' twice"):
        st.SafetensorsFile(path)
    path.write_bytes(file_bytes(b"[" * 100_000, b""))
    with pytest.raises(st.SafetensorsError, match="not JSON"):
        st.SafetensorsFile(path)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(st.SafetensorsError, match="bad header length 1000"):
        st.SafetensorsFile(path)


def test_missing_file_and_bad_index(tmp_path):
    with pytest.raises(st.SafetensorsError, match="nope.safetensors does not exist"):
        st.SafetensorsFile(tmp_path / "nope.safetensors")
    with pytest.raises(st.SafetensorsError, match="does not exist .*expected a checkpoint"):
        st.SafetensorsCheckpoint(tmp_path / "no_folder")
    index = tmp_path / st.INDEX_FILE
    for text in ("[]", '{"weight_map": [1]}', '{"weight_map": {"w": 3}}', "{", "\xff"):
        index.write_text(text, encoding="latin-1")
        with pytest.raises(st.SafetensorsError, match="index.json"):
            st.SafetensorsCheckpoint(tmp_path)
    index.write_text('{"weight_map": {"w": "../model.safetensors"}}')
    with pytest.raises(st.SafetensorsError, match="name of a file in the same folder"):
        st.SafetensorsCheckpoint(tmp_path)
