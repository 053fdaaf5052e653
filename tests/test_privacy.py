import stat

import pytest

from kiosk.errors import StoreError
from kiosk.privacy import load_or_create_key, subject_hash


def test_key_is_created_once_private_and_reused(tmp_path):
    path = tmp_path / "data" / "subject.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_subject_hash_is_keyed_and_stable():
    one, two = b"k" * 32, b"j" * 32
    person = "person:079201000123"
    assert subject_hash(one, person) == subject_hash(one, f" {person} ")
    assert subject_hash(one, person) != subject_hash(two, person)
    assert "079201000123" not in subject_hash(one, person)
    assert len(subject_hash(one, "staff-pass:x")) == 32


def test_a_crash_while_creating_the_key_leaves_no_file_behind(tmp_path, monkeypatch):
    # An empty or short key file would keep the gate from ever starting again.
    import kiosk.tempfiles

    path = tmp_path / "data" / "subject.key"

    def power_cut(self):
        self.file.flush()
        raise KeyboardInterrupt  # stands in for the kill: nothing after the write runs

    with monkeypatch.context() as patched:
        patched.setattr(kiosk.tempfiles.AtomicOutput, "commit", power_cut)
        with pytest.raises(KeyboardInterrupt):
            load_or_create_key(path)
    assert list(path.parent.iterdir()) == []
    key = load_or_create_key(path)
    assert len(key) == 32
    assert path.read_bytes() == key


def test_a_truncated_key_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "subject.key"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="truncated"):
        load_or_create_key(path)
