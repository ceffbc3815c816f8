"""The hand-written TensorBoard event files: framing, CRCs and a writer -> reader round trip."""

import struct

import pytest

from reczero_jax.observe import tensorboard as tb


def test_crc32c_known_vectors():
    # Check values from RFC 3720 (iSCSI), B.4.
    assert tb.crc32c(b"123456789") == 0xE3069283
    assert tb.crc32c(bytes(32)) == 0x8A9136AA
    assert tb.crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert tb.crc32c(bytes(range(32))) == 0x46DD794E


def test_round_trip_values_steps_tags(tmp_path):
    with tb.EventFileWriter(tmp_path) as w:
        w.scalar("reward/mean", 0.25, step=0)
        w.scalar("reward/mean", -1.5, step=10)
        w.scalar("perf/rollout_tokens_per_s", 1234.5, step=10)
        w.scalar("big", 3.0e38, step=2**40)
        w.scalar("neg", 7.0, step=-3)
    assert w.path.name.startswith("events.out.tfevents.")
    got = tb.read_scalars(tmp_path)
    assert got == {
        "reward/mean": [(0, 0.25), (10, -1.5)],
        "perf/rollout_tokens_per_s": [(10, 1234.5)],
        "big": [(2**40, struct.unpack("<f", struct.pack("<f", 3.0e38))[0])],
        "neg": [(-3, 7.0)],
    }
    # The first record is the version event.
    first = tb.decode_event(next(tb.iter_records(w.path)))
    assert first["file_version"] == "brain.Event:2"


def test_two_writers_in_one_second_use_two_files(tmp_path):
    a, b = tb.EventFileWriter(tmp_path), tb.EventFileWriter(tmp_path)
    a.scalar("x", 1.0, 1)
    b.scalar("x", 2.0, 2)
    a.close()
    b.close()
    assert a.path != b.path
    assert sorted(tb.read_scalars(tmp_path)["x"]) == [(1, 1.0), (2, 2.0)]


@pytest.mark.parametrize("where", ["length_crc", "payload", "data_crc"])
def test_reader_detects_corruption(tmp_path, where):
    with tb.EventFileWriter(tmp_path) as w:
        w.scalar("x", 1.0, 1)
    data = bytearray(w.path.read_bytes())
    record_len = struct.unpack("<Q", data[:8])[0] + 16  # the first (version) record
    pos = {"length_crc": 9, "payload": 13, "data_crc": record_len - 1}[where]
    data[pos] ^= 0x01
    w.path.write_bytes(bytes(data))
    with pytest.raises(tb.CorruptRecordError):
        tb.read_scalars(w.path)


def test_closed_writer_raises(tmp_path):
    w = tb.EventFileWriter(tmp_path)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.scalar("x", 1.0, 1)
