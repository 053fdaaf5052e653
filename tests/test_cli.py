"""The gatekiosk command, called in-process with click's CliRunner."""

from __future__ import annotations

import base64
import getpass
import json
import re
import shlex
from pathlib import Path
from typing import Any

import cv2
import pytest
from click.testing import CliRunner

from kiosk.cli import cli
from kiosk.config import load_settings
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
    "command",
    [
        "run",
        "demo",
        "decode",
        "check",
        "replay",
        "web",
        "user",
        "user add",
        "keys",
        "keys init",
        "keys rotate",
        "keys retire",
        "keys list",
        "user disable",
        "user enable",
        "trust list",
        "export",
        "selftest",
        "declare",
        "purge",
    ],
)
def test_every_command_has_help_with_an_example(runner, command):
    result = runner.invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


@pytest.mark.parametrize("command", ["check", "export", "selftest", "declare", "replay", "run"])
def test_help_examples_are_never_rewrapped_so_they_paste_whole(runner, command):
    result = runner.invoke(cli, [command, "--help"], terminal_width=60)
    shown = result.output.split("Example:")[1].split("Options:")[0]
    lines = [line.strip() for line in shown.strip().splitlines()]
    assert lines[0].startswith(("gatekiosk ", "sudo "))
    # Every line but the last ends in a shell continuation: nothing was re-flowed.
    assert all(line.endswith("\\") for line in lines[:-1]), lines
    assert all(len(line) <= 76 for line in lines), lines


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


def test_decode_reads_every_still_format_the_folder_source_reads(runner, tmp_path):
    image = write_image(tmp_path / "card.webp", CARD)

    result = runner.invoke(cli, ["decode", "--json", str(image)])

    assert result.exit_code == 0, result.output
    [line] = json_lines(result.output)
    assert (line["frame"], [c["text"] for c in line["codes"]]) == (None, [CARD])


def test_decode_a_folder_reports_the_images_that_hold_a_code_in_name_order(runner, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0000.png"), render_code_frame(b"x", module_px=0.01))
    write_image(frames / "0001.tif", CARD)
    write_image(frames / "0002.jpg", VISITOR_PC_COVID.payload)

    result = runner.invoke(cli, ["decode", "--json", str(frames)])

    assert result.exit_code == 0, result.output
    assert [(x["frame"], x["codes"][0]["text"]) for x in json_lines(result.output)] == [
        (1, CARD),
        (2, VISITOR_PC_COVID.payload),
    ]


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


def decisions(output: str) -> list[tuple[int, str, str]]:
    return [(x["frame"], x["decision"], x["reason"]) for x in json_lines(output)]


def test_replay_follows_the_recordings_time_not_the_machines(runner, tmp_path):
    # A card shown, gone for 3.3 s of video (longer than the 2 s hysteresis), shown again.
    video = tmp_path / "gate.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30, (640, 480), False)
    card, blank = render_code_frame(CARD), render_code_frame(b"x", module_px=0.01)
    for i in range(104):
        writer.write(card if i < 2 or i >= 102 else blank)
    writer.release()

    fast = runner.invoke(cli, ["replay", "--db", str(tmp_path / "a.db"), str(video)])
    paced = runner.invoke(
        cli, ["replay", "--fps", "30", "--db", str(tmp_path / "b.db"), str(video)]
    )

    assert fast.exit_code == 0, fast.output
    assert decisions(fast.output) == [(0, "allow", "ok"), (102, "allow", "ok-exit")]
    assert decisions(paced.output) == decisions(fast.output)


def test_replay_of_a_folder_takes_its_frame_rate_from_fps(runner, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    write_image(frames / "0.png", CARD)
    cv2.imwrite(str(frames / "1.png"), render_code_frame(b"x", module_px=0.01))
    write_image(frames / "2.png", CARD)

    default = runner.invoke(cli, ["replay", "--db", str(tmp_path / "a.db"), str(frames)])
    slow = runner.invoke(
        cli, ["replay", "--fps", "0.4", "--db", str(tmp_path / "b.db"), str(frames)]
    )

    # At 10 images a second the card is away 0.2 s: the same presentation.
    assert decisions(default.output) == [(0, "allow", "ok")]
    # At one image every 2.5 s it is away 5 s: shown again, leaving.
    assert decisions(slow.output) == [(0, "allow", "ok"), (2, "allow", "ok-exit")]
    assert "10 images per second" in runner.invoke(cli, ["replay", "--help"]).output


def test_replay_with_a_config_reads_the_sites_keys_and_denylist(runner, config, tmp_path):
    from kiosk.camera.files import FOLDER_FPS
    from kiosk.privacy import load_or_create_key, subject_hash, typed_id_subject
    from kiosk.samples import DENYLISTED_ID, VISITOR_DENYLISTED

    assert FOLDER_FPS == 10.0  # as the help says
    assert runner.invoke(cli, ["keys", "init", "--config", str(config)]).exit_code == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    declared = runner.invoke(
        cli, declare_args(config, frames / "0.png", "symptoms=no", "contact=no", "area=no")
    )
    assert declared.exit_code == 0, declared.output
    write_image(frames / "1.png", VISITOR_DENYLISTED.payload)
    settings = load_settings(config)
    key = load_or_create_key(settings.key_path)
    with Store.open(settings.db_path) as store:
        store.add_to_denylist(
            subject_hash(key, typed_id_subject(DENYLISTED_ID)),
            label="Phúc",
            note="test",
            at=store_now(),
        )
    elsewhere = tmp_path / "replay.db"

    result = runner.invoke(
        cli,
        ["replay", "--fps", "0.25", "--config", str(config), "--db", str(elsewhere), str(frames)],
    )

    assert result.exit_code == 0, result.output
    assert decisions(result.output) == [(0, "allow", "ok"), (1, "deny", "denylisted")]
    with Store.open(elsewhere) as store:
        assert len(store.recent_events()) == 2
    with Store.open(settings.db_path) as store:
        assert store.recent_events() == []  # the site's own log is untouched


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


@pytest.mark.slow
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


def printed_command(output: str, label: str) -> list[str]:
    """The arguments of the command the demo printed after ``label``, without the program."""
    line = next(line for line in output.splitlines() if label in line)
    words = shlex.split(line.split(":", 1)[1])
    assert words[0] == "gatekiosk"
    return words[1:]


def test_the_commands_the_demo_prints_work_on_the_demos_data(runner, tmp_path):
    data = tmp_path / "demo-data"
    first = runner.invoke(
        cli, ["demo", "--data-dir", str(data), "--seconds", "1", "--web-port", "0"]
    )
    assert first.exit_code == 0, first.output
    assert f"the demo's configuration: {data / 'gatekiosk.toml'}" in first.output

    added = runner.invoke(
        cli,
        printed_command(first.output, "add a guard"),
        input="guard password 1\nguard password 1\n",
    )
    checked = runner.invoke(cli, [*printed_command(first.output, "check a demo code"), "--json"])
    export_args = printed_command(first.output, "export the log")
    out = export_args.index("-o") + 1
    export_args[out] = str(tmp_path / export_args[out])
    exported = runner.invoke(cli, export_args)

    assert added.exit_code == 0, added.output
    assert "Added guard minh." in added.output
    assert checked.exit_code == 0, checked.output
    decision = json.loads(checked.output)
    assert (decision["decision"], decision["reason"], decision["kind"]) == (
        "allow",
        "ok",
        "declaration",
    )
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "demo-log.xlsx").stat().st_size > 0


def test_each_demo_starts_afresh_unless_kept(runner, tmp_path):
    def demo(*extra: str) -> Any:
        result = runner.invoke(
            cli,
            ["demo", "--data-dir", str(tmp_path), "--seconds", "2.5", "--web-port", "0", *extra],
        )
        assert result.exit_code == 0, result.output
        return result

    def counts() -> tuple[int, int]:
        with Store.open(tmp_path / "gatekiosk.db") as store:
            passes = store.site_codes("staff-pass", now=store_now())
            return len(store.recent_events()), len(passes)

    assert "Starting afresh" not in demo().output  # nothing to clear the first time
    once = counts()
    again = demo()
    assert "Starting afresh: the earlier demo's database was removed" in again.output
    assert counts() == once == (1, 1)
    kept = demo("--keep")
    assert "Continuing with the events, passes and presence of earlier runs" in kept.output
    assert counts()[0] == 2


def test_the_demo_refuses_to_clear_a_database_that_is_not_the_demos(runner, tmp_path):
    from kiosk.clock import FakeClock
    from tests.web import record

    with Store.open(tmp_path / "gatekiosk.db") as store:
        record(store, FakeClock())
    result = runner.invoke(cli, ["demo", "--data-dir", str(tmp_path), "--seconds", "1"])
    assert result.exit_code == 1
    assert "holds events of another gate, not the demo's" in result.output
    with Store.open(tmp_path / "gatekiosk.db") as store:
        assert len(store.recent_events()) == 1


def test_the_demo_says_once_that_its_clock_is_the_machines(monkeypatch, tmp_path):
    import io

    from kiosk.clock import SystemClock
    from kiosk.demo import run_demo

    monkeypatch.setattr(SystemClock, "synchronised", lambda self: False)
    out = io.StringIO()
    run_demo(data_dir=tmp_path, seconds=2.5, out=out, web_port=0)

    text = out.getvalue()
    assert text.count("This machine's clock is not synchronised (NTP); the demo uses it") == 1
    with Store.open(tmp_path / "gatekiosk.db") as store:
        assert all(event.clock_synced for event in store.recent_events())


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


def test_user_changes_from_the_cli_are_audited_and_disable_enable_work(runner, config):
    def user_cmd(*args: str, password: str | None = None) -> Any:
        result = runner.invoke(cli, ["user", *args, "--config", str(config)], input=password)
        assert result.exit_code == 0, result.output
        return result

    user_cmd("add", "lan", "--role", "manager", "--password-stdin", password="correct horse 1\n")
    user_cmd("add", "minh", "--role", "guard", "--password-stdin", password="guard password 1\n")
    assert user_cmd("disable", "minh").output == "minh is disabled.\n"
    assert user_cmd("list").output == "lan\tmanager\tenabled\nminh\tguard\tdisabled\n"
    assert user_cmd("enable", "minh").output == "minh can log in again.\n"
    user_cmd("disable", "minh")
    user_cmd("reset-password", "minh", "--password-stdin", password="guard password 2\n")
    assert user_cmd("list").output.splitlines()[1] == "minh\tguard\tenabled"
    lonely = user_cmd("disable", "lan")
    assert "No enabled manager remains" in lonely.output

    assert [(a.actor, a.action, a.detail) for a in audit_rows(config)] == [
        (ACTOR, "user-add", {"user": "lan", "role": "manager"}),
        (ACTOR, "user-add", {"user": "minh", "role": "guard"}),
        (ACTOR, "user-disable", {"user": "minh"}),
        (ACTOR, "user-enable", {"user": "minh"}),
        (ACTOR, "user-disable", {"user": "minh"}),
        (ACTOR, "user-password-reset", {"user": "minh"}),
        (ACTOR, "user-enable", {"user": "minh"}),
        (ACTOR, "user-disable", {"user": "lan"}),
    ]
    missing = runner.invoke(cli, ["user", "disable", "nobody", "--config", str(config)])
    assert missing.exit_code == 1
    assert "no user named 'nobody'" in missing.output


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
    assert text.startswith('\ufeff"Giờ địa phương (Asia/Ho_Chi_Minh, UTC+07:00)",Giờ UTC,Cổng,')
    english = runner.invoke(
        cli, ["export", "--config", str(config), "--lang", "en", "-o", str(tmp_path / "en.csv")]
    )
    assert english.exit_code == 0, english.output
    assert (tmp_path / "en.csv").read_text(encoding="utf-8-sig").startswith('"Local time (')
    assert as_xlsx.exit_code == 0, as_xlsx.output
    sheet = openpyxl.load_workbook(xlsx_out, read_only=True).worksheets[0]
    assert sheet.max_row == 2
    with Store.open(tmp_path / "gatekiosk.db") as store:
        audits = [a for a in store.audit_entries() if a.action == "export"]
    assert sorted(a.row_count or 0 for a in audits) == [1, 1, 2]
    assert all(a.actor.startswith("cli:") for a in audits)


def test_export_with_a_bad_date_says_what_it_expects(runner, tmp_path):
    result = runner.invoke(cli, ["export", "--from", "yesterday", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "is not a date (2026-11-01) or a time (2026-11-01T08:00)" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_export_refuses_a_suffix_it_cannot_tell_the_format_from(runner, tmp_path):
    refused = runner.invoke(cli, ["export", "-o", str(tmp_path / "x.txt")])
    assert refused.exit_code == 2
    assert "cannot tell the format from 'x.txt'" in refused.output
    assert not (tmp_path / "x.txt").exists()
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\ndata_dir = "{tmp_path / "data"}"\n')
    named = runner.invoke(
        cli, ["export", "--config", str(config), "--format", "csv", "-o", str(tmp_path / "x.txt")]
    )
    assert named.exit_code == 0, named.output
    assert (tmp_path / "x.txt").exists()


def test_log_lines_are_stamped_in_the_site_time_with_its_offset():
    import logging
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from kiosk.cli.group import SiteTimeFormatter

    record = logging.LogRecord("kiosk.scanner", logging.INFO, __file__, 1, "allow in", (), None)
    record.created = datetime(2026, 11, 28, 8, 4, 5, 123000, tzinfo=UTC).timestamp()

    line = SiteTimeFormatter(ZoneInfo("Asia/Ho_Chi_Minh")).format(record)

    assert line == "2026-11-28T15:04:05.123+07:00 INFO kiosk.scanner: allow in"


# -- site keys, declarations at the desk, purge ------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(f'[gate]\ndata_dir = "{tmp_path / "data"}"\nsite_id = "xuong-may"\n')
    return path


KID = r"[0-9a-f]{16}"
ACTOR = f"cli:{getpass.getuser()}"


def audit_rows(config: Path) -> list[Any]:
    """The site's audit log, oldest first."""
    with Store.open(load_settings(config).db_path) as store:
        return sorted(store.audit_entries(), key=lambda a: a.id)


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00"


def test_keys_init_says_where_the_private_key_is_and_a_second_init_is_refused(
    runner, config, tmp_path
):
    keys = tmp_path / "data" / "keys"

    first = runner.invoke(cli, ["keys", "init", "--config", str(config)])
    second = runner.invoke(cli, ["keys", "init", "--config", str(config)])

    assert first.exit_code == 0, first.output
    kid = re.search(rf"Created site key ({KID}) in {re.escape(str(keys))}\.", first.output)
    assert kid is not None
    assert f"Private key: {keys}/private/{kid[1]}.pem." in first.output
    assert "readable only by the user the web service runs as" in first.output
    assert second.exit_code == 1
    assert second.output == (
        f"Error: site keys already exist in {keys}; "
        "use `gatekiosk keys rotate` to add a new signing key\n"
    )


def test_keys_list_rotate_and_retire(runner, config):
    def keys_cmd(*args: str) -> Any:
        result = runner.invoke(cli, ["keys", *args, "--config", str(config)])
        assert result.exit_code == 0, result.output
        return result

    keys_cmd("init")
    header, only = keys_cmd("list").output.splitlines()
    assert header == "KEY ID\tCREATED\tSTATE"
    assert re.fullmatch(rf"{KID}\t{STAMP}\tactive", only)
    first_kid = only.split("\t")[0]

    rotated = keys_cmd("rotate")
    new_kid = re.search(
        rf"New signing key ({KID}) in .*; older keys still verify\.", rotated.output
    )
    assert new_kid is not None
    listed = keys_cmd("list").output.splitlines()[1:]
    assert [line.split("\t")[::2] for line in listed] == [
        [first_kid, "valid"],
        [new_kid[1], "active"],
    ]

    retired = keys_cmd("retire", first_kid)
    assert retired.output == (
        f"Retired site key {first_kid}: codes it signed are refused from now on; "
        "its private key was deleted.\n"
    )
    states = [line.split("\t")[2] for line in keys_cmd("list").output.splitlines()[1:]]
    assert re.fullmatch(rf"retired {STAMP}", states[0])
    assert states[1] == "active"

    actions = audit_rows(config)
    assert [(a.actor, a.action, a.detail["kid"]) for a in actions] == [
        (ACTOR, "key-init", first_kid),
        (ACTOR, "key-rotate", new_kid[1]),
        (ACTOR, "key-retire", first_kid),
    ]

    last = keys_cmd("retire", new_kid[1])
    assert "No signing key remains: run `gatekiosk keys rotate`" in last.output
    again = runner.invoke(cli, ["keys", "retire", new_kid[1], "--config", str(config)])
    assert again.exit_code == 1
    assert f"Error: site key {new_kid[1]} was already retired" in again.output


def test_keys_list_without_keys_says_what_to_run(runner, config):
    result = runner.invoke(cli, ["keys", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert "run `gatekiosk keys init`" in result.output


def declare_args(config: Path, output: Path, *answers: str) -> list[str]:
    args = ["declare", "--config", str(config), "--name", "  nguyễn   Văn An "]
    args += ["--phone", "0901 234 567", "-o", str(output)]
    for answer in answers:
        args += ["--answers", answer]
    return args


def test_declare_writes_a_png_the_gate_reads_and_allows(runner, config, tmp_path):
    assert runner.invoke(cli, ["keys", "init", "--config", str(config)]).exit_code == 0
    png = tmp_path / "an.png"

    result = runner.invoke(cli, declare_args(config, png, "symptoms=no", "contact=No", "area=no"))

    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert re.fullmatch(
        rf"Wrote the declaration of nguyễn Văn An to {re.escape(str(png))}: "
        r"valid until \d{4}-\d\d-\d\dT\d\d:\d\d\+07:00 \(24 h\), code [0-9a-f]{16}\.",
        first,
    )
    assert second == "The gate will admit it."
    decoded = runner.invoke(cli, ["decode", "--json", str(png)])
    [code] = json.loads(decoded.output)["codes"]
    assert code["text"].startswith("GK1:")

    checked = runner.invoke(cli, ["check", "--json", "--config", str(config), "--image", str(png)])
    line = json.loads(checked.output)
    assert (line["decision"], line["reason"], line["kind"]) == ("allow", "ok", "declaration")
    with Store.open(tmp_path / "data" / "gatekiosk.db") as store:
        [record] = store.site_codes("declaration", now=store_now())
    assert record.issued_by.startswith("cli:")
    assert (record.phone, record.verdict) == ("0901234567", "ok")
    assert record.answers == {"symptoms": False, "contact": False, "area": False}


def store_now() -> Any:
    from kiosk.clock import SystemClock

    return SystemClock().now()


def test_declare_with_a_refusing_answer_says_the_gate_will_refuse(runner, config, tmp_path):
    assert runner.invoke(cli, ["keys", "init", "--config", str(config)]).exit_code == 0
    png = tmp_path / "an.png"

    result = runner.invoke(cli, declare_args(config, png, "symptoms=no", "contact=yes", "area=no"))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        "The gate will refuse it (sitecode-refused-answers): the answer to 'contact' "
        "refuses entry; the guard decides."
    )
    checked = runner.invoke(cli, ["check", "--json", "--config", str(config), "--image", str(png)])
    assert json.loads(checked.output)["reason"] == "sitecode-refused-answers"


def test_declare_with_a_missing_answer_lists_the_questions_and_writes_nothing(
    runner, config, tmp_path
):
    assert runner.invoke(cli, ["keys", "init", "--config", str(config)]).exit_code == 0
    png = tmp_path / "an.png"

    result = runner.invoke(cli, declare_args(config, png, "symptoms=no", "pets=no"))

    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == (
        "Error: 'pets' is not one of the site's questions; not answered: contact, area. "
        "Answer every question with --answers KEY=yes or KEY=no:"
    )
    assert [line.split(":")[0] for line in lines[1:]] == ["  symptoms", "  contact", "  area"]
    assert "In the last 14 days, have you been in contact with a confirmed case?" in lines[2]
    assert not png.exists()
    with Store.open(tmp_path / "data" / "gatekiosk.db") as store:
        assert store.site_codes("declaration", now=store_now()) == []


def test_declare_without_site_keys_says_to_make_them(runner, config, tmp_path):
    png = tmp_path / "an.png"
    result = runner.invoke(cli, declare_args(config, png, "symptoms=no", "contact=no", "area=no"))
    assert result.exit_code == 1
    assert "run `gatekiosk keys init`" in result.output


def test_check_refuses_a_declaration_the_site_revoked(runner, config, tmp_path):
    assert runner.invoke(cli, ["keys", "init", "--config", str(config)]).exit_code == 0
    png = tmp_path / "an.png"
    made = runner.invoke(cli, declare_args(config, png, "symptoms=no", "contact=no", "area=no"))
    code_id = made.output.split("code ")[1].split(".")[0]
    with Store.open(tmp_path / "data" / "gatekiosk.db") as store:
        assert store.revoke_site_code(code_id, by="manager", at=store_now())

    checked = runner.invoke(cli, ["check", "--json", "--config", str(config), "--image", str(png)])

    assert json.loads(checked.output)["reason"] == "sitecode-revoked"


def test_purge_deletes_old_events_and_issued_codes_and_prints_the_counts(runner, config, tmp_path):
    from datetime import timedelta

    from kiosk.clock import FakeClock
    from kiosk.declarations import DEFAULT_QUESTIONS, issue_declaration
    from kiosk.keys import init_keys
    from tests.web import record

    keys = tmp_path / "data" / "keys"
    now = store_now()
    init_keys(keys, at=now)
    with Store.open(tmp_path / "data" / "gatekiosk.db") as store:
        store.save_site_settings({"privacy.retention_days": 7}, by="manager", at=now)
        for days in (3, 9, 40):
            record(store, FakeClock(), at=now - timedelta(days=days))
        for days in (2, 9):
            issue_declaration(
                store,
                keys,
                site_id="xuong-may",
                name="Vũ Minh Khoa",
                phone="0901234567",
                answers={q.key: False for q in DEFAULT_QUESTIONS},
                questions=DEFAULT_QUESTIONS,
                validity=timedelta(hours=24),
                at=now - timedelta(days=days),
                issued_by="test",
            )

    result = runner.invoke(cli, ["purge", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert result.output == "Purged 2 events and 1 issued codes (retention: 7 days).\n"


def test_purge_goes_batch_by_batch_and_prints_the_totals(runner, config, tmp_path):
    from datetime import timedelta

    from kiosk.clock import FakeClock
    from kiosk.site_business import PURGE_BATCH_ROWS
    from tests.test_purge import copy_event
    from tests.web import record

    now = store_now()
    db_path = tmp_path / "data" / "gatekiosk.db"
    with Store.open(db_path) as store:
        record(store, FakeClock(), at=now - timedelta(days=40))
        [old] = store.recent_events()
        record(store, FakeClock(), at=now - timedelta(days=3))
    copy_event(db_path, old.id, 2 * PURGE_BATCH_ROWS)  # two batches and one row past retention

    result = runner.invoke(cli, ["purge", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Purged {2 * PURGE_BATCH_ROWS + 1} events and 0 issued codes (retention: 21 days).\n"
    )
    with Store.open(db_path) as store:
        assert len(store.recent_events()) == 1


# -- what each command loads -------------------------------------------------

IMAGE_LIBRARIES = ("cv2", "zxingcpp", "picamera2")
"""Loaded only by commands that read images or drive a camera."""

REPORT_LOADED = """
import json, sys
from kiosk.cli import main
try:
    main()
finally:
    names = ("cv2", "numpy", "zxingcpp", "picamera2", "segno")
    print(json.dumps(sorted(n for n in names if n in sys.modules)), file=sys.stderr)
"""
"""Runs gatekiosk with the arguments after ``-c``, then reports on the last
line of stderr which of the heavy libraries the command imported."""

IMAGELESS_COMMANDS = {
    "check --payload": ["check", "--payload", CARD],
    "export (empty range)": ["export", "--from", "2000-01-01", "--to", "2000-01-02", "-o", "{out}"],
    "purge": ["purge"],
    "user list": ["user", "list"],
    "trust list": ["trust", "list"],
    "keys init": ["keys", "init"],
}


@pytest.fixture(scope="module")
def loaded_by(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The heavy libraries a command loads, run once per command as a whole process."""
    import subprocess
    import sys

    cache: dict[str, set[str]] = {}

    def loaded(command: str) -> set[str]:
        if command not in cache:
            tmp = tmp_path_factory.mktemp("imports")
            config = tmp / "gate.toml"
            config.write_text(f'[gate]\ndata_dir = "{tmp / "data"}"\n')
            # A site's database exists before its first export: migrating a new
            # file is the one time sqlite-utils (and so numpy) is loaded.
            Store.open(load_settings(config).db_path).close()
            args = [a.format(out=tmp / "out.csv") for a in IMAGELESS_COMMANDS[command]]
            done = subprocess.run(
                [sys.executable, "-c", REPORT_LOADED, *args, "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            cache[command] = set(json.loads(done.stderr.strip().splitlines()[-1]))
        return cache[command]

    return loaded


@pytest.mark.parametrize("command", IMAGELESS_COMMANDS)
def test_commands_that_touch_no_image_load_no_opencv_zxing_or_picamera2(loaded_by, command):
    assert loaded_by(command) & set(IMAGE_LIBRARIES) == set()


@pytest.mark.parametrize("command", ["check --payload", "export (empty range)"])
def test_commands_that_touch_no_image_load_no_numpy(loaded_by, command):
    assert "numpy" not in loaded_by(command)


def test_the_readme_command_table_names_every_command_and_the_demo_and_selftest_options():
    import click

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for name, command in cli.commands.items():
        assert f"`gatekiosk {name}" in table or f"`{name}`" in table or f", `{name}" in table, name
        if isinstance(command, click.Group):
            for sub in command.commands:
                assert sub in table, f"{name} {sub}"
    for with_options in ("demo", "selftest"):
        for param in cli.commands[with_options].params:
            for option in param.opts:
                if option.startswith("--") and option != "--help":
                    assert option in table, f"{with_options} {option}"
