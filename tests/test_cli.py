"""The gatekiosk command, called in-process with click's CliRunner."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import cv2
import pytest
from click.testing import CliRunner

from kiosk.cli import cli
from kiosk.samples import VISITOR_CCCD, VISITOR_PC_COVID, VISITOR_UNRECOGNISED
from kiosk.store import Store
from kiosk.synthetic import render_code_frame

CARD = VISITOR_CCCD.payload


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_image(path: Path, payload: str | bytes, **look: Any) -> Path:
    cv2.imwrite(str(path), render_code_frame(payload, **look))
    return path


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "command", ["run", "demo", "decode", "check", "replay", "web", "user", "user add"]
)
def test_every_command_has_help_with_an_example(runner, command):
    result = runner.invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


@pytest.mark.parametrize("backend", ["zxing", "zbar"])
def test_decode_json_gives_exact_bytes_text_and_corners(runner, tmp_path, backend):
    image = write_image(tmp_path / "card.png", CARD, angle_deg=20)

    result = runner.invoke(cli, ["decode", "--backend", backend, "--json", str(image)])

    assert result.exit_code == 0, result.output
    [line] = json_lines(result.output)
    assert line["file"] == str(image)
    assert line["frame"] is None
    [code] = line["codes"]
    assert code["text"] == CARD
    assert base64.b64decode(code["bytes_b64"]) == CARD.encode("utf-8")
    assert len(code["corners"]) == 4
    assert line["ms"] >= 0


def test_decode_a_video_reports_the_frames_that_hold_a_code(runner, tmp_path):
    video = tmp_path / "gate.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480), False)
    blank = render_code_frame(b"x", module_px=0.01)  # a code too small to exist
    for i in range(6):
        writer.write(render_code_frame(CARD) if i in (2, 3) else blank)
    writer.release()

    result = runner.invoke(cli, ["decode", "--json", str(video)])

    assert result.exit_code == 0, result.output
    assert [(line["frame"], line["codes"][0]["text"]) for line in json_lines(result.output)] == [
        (2, CARD),
        (3, CARD),
    ]


def test_decode_an_image_without_a_code_says_so(runner, tmp_path):
    image = tmp_path / "empty.png"
    cv2.imwrite(str(image), render_code_frame(b"x", module_px=0.01))
    result = runner.invoke(cli, ["decode", str(image)])
    assert result.exit_code == 0
    assert "no QR code" in result.output


def test_decode_a_file_that_is_not_an_image_is_a_clear_error(runner, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not a picture")
    result = runner.invoke(cli, ["decode", str(bogus)])
    assert result.exit_code == 1
    assert "Error: " in result.output
    assert "not an image" in result.output


def test_check_payload_json(runner):
    result = runner.invoke(cli, ["check", "--json", "--payload", CARD])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "decision": "allow",
        "reason": "ok",
        "kind": "cccd",
        "direction": "in",
        "message": {"vi": "Mời vào", "en": "Welcome, please enter"},
        "warning": None,
    }


def test_check_unrecognised_payload_is_refused_with_its_reason(runner):
    result = runner.invoke(cli, ["check", "--json", "--payload", VISITOR_UNRECOGNISED.payload])
    line = json.loads(result.output)
    assert (line["decision"], line["reason"], line["kind"]) == (
        "deny",
        "unrecognised",
        "unrecognised",
    )


def test_check_at_a_time_before_the_visitor_was_born(runner):
    result = runner.invoke(
        cli, ["check", "--json", "--at", "1985-01-01T08:00:00+07:00", "--payload", CARD]
    )
    line = json.loads(result.output)
    assert (line["decision"], line["reason"]) == ("deny", "cccd-bad-birth-date")


def test_check_image(runner, tmp_path):
    image = write_image(tmp_path / "pc.png", VISITOR_PC_COVID.payload, blur_sigma=1.2)
    result = runner.invoke(cli, ["check", "--json", "--image", str(image)])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    assert (line["decision"], line["kind"]) == ("allow", "pc-covid")


def test_check_reads_presence_from_the_sites_database(runner, tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path / "data"}"\n')
    replay_dir = tmp_path / "frames"
    replay_dir.mkdir()
    write_image(replay_dir / "0001.png", CARD)
    db = tmp_path / "data" / "gatekiosk.db"
    entered = runner.invoke(
        cli, ["replay", "--config", str(config), "--db", str(db), str(replay_dir)]
    )
    assert entered.exit_code == 0, entered.output

    result = runner.invoke(cli, ["check", "--json", "--config", str(config), "--payload", CARD])

    line = json.loads(result.output)
    assert (line["decision"], line["direction"], line["reason"]) == ("allow", "out", "ok-exit")
    with Store.open(db) as store:
        assert len(store.recent_events()) == 1  # check recorded nothing


def test_check_needs_exactly_one_of_payload_or_image(runner):
    result = runner.invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "give exactly one of --payload or --image" in result.output


def test_check_rejects_a_time_without_offset(runner):
    result = runner.invoke(cli, ["check", "--at", "2026-01-01T08:00", "--payload", CARD])
    assert result.exit_code == 2
    assert "has no UTC offset" in result.output


def test_replay_prints_one_json_line_per_decision(runner, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    sequence = [CARD, CARD, None, VISITOR_UNRECOGNISED.payload]
    for i, payload in enumerate(sequence):
        if payload is None:
            cv2.imwrite(str(frames / f"{i:04}.png"), render_code_frame(b"x", module_px=0.01))
        else:
            write_image(frames / f"{i:04}.png", payload)
    db = tmp_path / "replay.db"

    result = runner.invoke(cli, ["replay", "--db", str(db), str(frames)])

    assert result.exit_code == 0, result.output
    lines = json_lines(result.output)
    assert [(x["frame"], x["decision"], x["reason"], x["kind"]) for x in lines] == [
        (0, "allow", "ok", "cccd"),
        (3, "deny", "unrecognised", "unrecognised"),
    ]
    assert all(x["latency_ms"] >= 0 for x in lines)
    with Store.open(db) as store:
        assert [e.kind for e in store.recent_events()] == ["unrecognised", "cccd"]


def test_run_with_a_bad_config_lists_every_problem_and_exits_1(runner, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[gate]\nmode = "sideways"\n[pins]\nred = 17\n')
    result = runner.invoke(cli, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert "Error: invalid configuration" in result.output
    assert "gate.mode: 'sideways' is not one of entry, exit, both" in result.output
    assert "GPIO17" in result.output


def test_run_with_a_missing_config_file_says_which(runner, tmp_path):
    result = runner.invoke(cli, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml: no such file" in result.output


def test_demo_decides_and_records_the_first_visitor(runner, tmp_path):
    result = runner.invoke(
        cli, ["demo", "--data-dir", str(tmp_path), "--seconds", "2.5", "--web-port", "0"]
    )

    assert result.exit_code == 0, result.output
    assert "CHO VÀO/ALLOW  in  cccd         Nguyễn Văn An ********0123" in result.output
    assert re.search(r"Admin page: http://127\.0\.0\.1:\d+/  user: demo  password", result.output)
    with Store.open(tmp_path / "gatekiosk.db") as store:
        [event] = store.recent_events()
    assert (event.kind, event.decision, event.display_name) == ("cccd", "allow", "Nguyễn Văn An")


def test_user_add_reads_the_password_from_stdin_and_never_stores_it_plain(runner, tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')

    added = runner.invoke(
        cli,
        ["user", "add", "lan", "--role", "manager", "--password-stdin", "--config", str(config)],
        input="correct horse battery\n",
    )
    listed = runner.invoke(cli, ["user", "list", "--config", str(config)])

    assert added.exit_code == 0, added.output
    assert added.output == "Added manager lan.\n"
    assert listed.output == "lan\tmanager\tenabled\n"
    assert b"correct horse battery" not in (tmp_path / "gatekiosk.db").read_bytes()


def test_user_add_refuses_a_short_password_with_a_clear_error(runner, tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')
    result = runner.invoke(
        cli,
        ["user", "add", "lan", "--role", "guard", "--password-stdin", "--config", str(config)],
        input="short\n",
    )
    assert result.exit_code == 1
    assert "Error: the password must have at least 10 characters" in result.output


def test_user_add_prompts_twice_for_the_password(runner, tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')
    result = runner.invoke(
        cli,
        ["user", "add", "thu", "--role", "guard", "--config", str(config)],
        input="guard-password-1\nguard-password-1\n",
    )
    assert result.exit_code == 0, result.output
    assert "Added guard thu." in result.output


def test_export_writes_the_days_asked_for_in_local_time_and_audits_it(runner, tmp_path):
    from datetime import UTC, datetime

    import openpyxl

    from kiosk.clock import FakeClock
    from tests.web import record

    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path}"\n')
    # 2026-11-27 23:30 local (UTC+7) is 16:30 UTC; 2026-11-28 00:30 local is 17:30 UTC.
    clock = FakeClock(wall=datetime(2026, 11, 27, 16, 30, tzinfo=UTC))
    with Store.open(tmp_path / "gatekiosk.db") as store:
        record(store, clock, display_name="Hôm trước")
        clock.advance(3600)
        record(store, clock, display_name="=cmd|' /C calc'!A0")

    csv_out = tmp_path / "day.csv"
    result = runner.invoke(
        cli,
        [
            "export",
            "--config",
            str(config),
            "--from",
            "2026-11-28",
            "--to",
            "2026-11-28",
            "-o",
            str(csv_out),
        ],
    )
    xlsx_out = tmp_path / "day.xlsx"
    as_xlsx = runner.invoke(
        cli, ["export", "--config", str(config), "--from", "2026-11-28", "-o", str(xlsx_out)]
    )

    assert result.exit_code == 0, result.output
    assert result.output == f"Wrote 1 events to {csv_out}.\n"
    text = csv_out.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff")
    assert "Hôm trước" not in text
    assert "'=cmd|' /C calc'!A0" in text
    assert as_xlsx.exit_code == 0, as_xlsx.output
    sheet = openpyxl.load_workbook(xlsx_out, read_only=True).worksheets[0]
    assert sheet.max_row == 2
    with Store.open(tmp_path / "gatekiosk.db") as store:
        audits = [a for a in store.audit_entries() if a.action == "export"]
    assert [a.row_count for a in audits] == [1, 1]
    assert all(a.actor.startswith("cli:") for a in audits)


def test_export_with_a_bad_date_says_what_it_expects(runner, tmp_path):
    result = runner.invoke(cli, ["export", "--from", "yesterday", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "is not a date (2026-11-01) or a time (2026-11-01T08:00)" in result.output
    assert not (tmp_path / "x.csv").exists()
