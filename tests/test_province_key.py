"""``gatekiosk province key OUT``: the province makes its key once, 32 random
bytes only its owner reads, which every gate's ``load_province_key`` takes;
an existing key is never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from kiosk.cli import cli
from kiosk.privacy import KEY_BYTES, load_province_key


def make_key(out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["province", "key", str(out)])
    return result.exit_code, result.output


def test_the_key_is_32_random_bytes_mode_0600_that_a_gate_accepts(tmp_path: Path) -> None:
    out = tmp_path / "province.key"
    code, output = make_key(out)
    assert code == 0, output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(out.read_bytes()) == KEY_BYTES
    assert load_province_key(out) == out.read_bytes()
    assert f"Đã tạo khóa cấp tỉnh {out} (quyền 0600)" in output
    assert "give this same file to every gate of the province, out of band" in output
    assert "Only where the law requires it" in output
    assert "privacy.province_key_file" in output
    other = tmp_path / "other.key"
    assert make_key(other)[0] == 0
    assert other.read_bytes() != out.read_bytes()


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "province.key"
    assert make_key(out)[0] == 0
    key = out.read_bytes()
    code, output = make_key(out)
    assert code == 1
    assert f"Error: {out} đã có; không ghi đè khóa cấp tỉnh" in output
    assert "a province key is never overwritten (every gate must hold the same key)" in output
    assert out.read_bytes() == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["province.key"]  # no part file left


def test_a_folder_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    code, output = make_key(tmp_path / "missing" / "province.key")
    assert code == 1
    assert "Error: không ghi được / cannot write" in output
    assert "Traceback" not in output
