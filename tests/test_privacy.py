import stat

from kiosk.privacy import load_or_create_key, subject_hash


def test_key_is_created_once_private_and_reused(tmp_path):
    path = tmp_path / "data" / "subject.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_subject_hash_is_keyed_and_stable():
    one, two = b"k" * 32, b"j" * 32
    assert subject_hash(one, "079201000123") == subject_hash(one, " 079201000123 ")
    assert subject_hash(one, "079201000123") != subject_hash(two, "079201000123")
    assert "079201000123" not in subject_hash(one, "079201000123")
    assert len(subject_hash(one, "x")) == 32
