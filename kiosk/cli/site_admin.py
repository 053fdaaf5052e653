"""``gatekiosk site``: make a hub, join a gate to it, tokens and revocation.

On the hub: ``site init`` (once; safe to run again), ``site token`` (or the
web's Gates page), ``site revoke GATE``. On a gate: ``site join HUB``.
"""

from __future__ import annotations

from pathlib import Path

import click

from kiosk.cli.group import cli, config_option, load, open_store


@cli.group()
def site() -> None:
    """Several gates, one site: the hub and the gates that join it.

    Example (on the hub, then on each gate):

    \b
        gatekiosk site init --site factory-1 --host hub.local --config hub.toml
        gatekiosk site join hub.local --token ABCD-EFGH-JKLM-NPQR \\
            --ca "1A2B 3C4D ..." --config gate.toml
    """


@site.command("init")
@config_option
@click.option("--site", "site_id", required=True, help="The site's id (a-z, 0-9, '-').")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="A name or address gates reach this hub at (repeat; the first is given to gates).",
)
@click.option("--broker-port", default=8883, show_default=True, help="The broker's TLS port.")
def site_init(
    config_path: Path | None, site_id: str, hosts: tuple[str, ...], broker_port: int
) -> None:
    """Make this machine the hub of a site: the site CA and the hub's
    certificates, the broker's configuration, the site's subject-hash key and
    signing keys. Safe to run again; a CA is never replaced.

    Example:

        gatekiosk site init --site factory-1 --host hub.local --host 192.168.1.10
    """
    from kiosk.clock import SystemClock
    from kiosk.site.enrolment import ca_fingerprint
    from kiosk.site.hub_setup import HubFolder, init_hub
    from kiosk.site.pki import load_certificate

    settings = load(config_path)
    hub = HubFolder(settings.site_dir)
    report = init_hub(
        hub,
        site_id=site_id,
        hosts=hosts,
        broker_port=broker_port,
        keys_dir=settings.keys_dir,
        hash_key_path=settings.key_path,
        now=SystemClock().now(),
    )
    made, kept = "Đã tạo / created", "Đã có, giữ nguyên / kept"
    click.echo(f"CA của khu vực / site CA ({site_id}): {made if report.created_ca else kept}")
    click.echo(
        "Khoá băm của khu vực / site subject-hash key: "
        f"{made if report.created_hash_key else kept} ({settings.key_path})"
    )
    click.echo(
        "Khoá ký / signing keys: "
        f"{made if report.created_signing_keys else kept} ({settings.keys_dir})"
    )
    click.echo(f"Cấu hình broker / broker config: {report.broker_config}")
    click.echo(f"  mosquitto -c {report.broker_config}")
    fingerprint = ca_fingerprint(load_certificate(hub.pki.ca_certificate))
    click.echo(f"Mã vân tay CA / CA fingerprint: {fingerprint}")
    click.echo(
        "Tiếp theo: tạo mã một lần trên trang Cổng (hoặc `gatekiosk site token`). / "
        "Next: make a one-time token on the Gates page (or `gatekiosk site token`)."
    )


@site.command("token")
@config_option
def site_token(config_path: Path | None) -> None:
    """Make a one-time enrolment token (valid one hour, used once).

    Example:

        gatekiosk site token --config hub.toml
    """
    from kiosk.clock import SystemClock
    from kiosk.site.enrolment import TOKEN_TTL, ca_fingerprint, new_enrolment_token, token_hash
    from kiosk.site.hub_setup import HubFolder
    from kiosk.site.pki import load_certificate
    from kiosk.store import AuditNote

    settings = load(config_path)
    hub = HubFolder(settings.site_dir)
    description = hub.description()
    now = SystemClock().now()
    token = new_enrolment_token()
    with open_store(config_path) as store:
        store.site_documents.add_enrolment_token(
            token_hash(token),
            created_at=now,
            expires_at=now + TOKEN_TTL,
            created_by="cli",
            audit=AuditNote("cli", "site-token", {"expires": (now + TOKEN_TTL).isoformat()}, now),
        )
    fingerprint = ca_fingerprint(load_certificate(hub.pki.ca_certificate))
    minutes = int(TOKEN_TTL.total_seconds() // 60)
    click.echo(f"Mã một lần / one-time token: {token}  ({minutes} min)")
    click.echo(f"Mã vân tay CA / CA fingerprint: {fingerprint}")
    click.echo(
        f"  gatekiosk site join {description.hosts[0]}:{settings['site.enrol_port']}"
        f' --token {token} --ca "{fingerprint}"'
    )


@site.command("join")
@config_option
@click.argument("hub_address", metavar="HUB")
@click.option("--token", required=True, help="The one-time token shown on the hub.")
@click.option("--ca", "fingerprint", required=True, help="The CA fingerprint shown on the hub.")
def site_join(config_path: Path | None, hub_address: str, token: str, fingerprint: str) -> None:
    """Join this gate to the site whose hub is HUB (host or host:port of its
    enrolment port). Writes the site's files and the [site] settings.

    Example:

        gatekiosk site join hub.local --token ABCD-EFGH-JKLM-NPQR --ca "1A2B ..."
    """
    from kiosk.site.join import GateSiteFiles, join_site, write_site_settings

    settings = load(config_path)
    files = GateSiteFiles(settings.site_dir)
    joined = join_site(
        hub_address,
        token=token,
        fingerprint=fingerprint,
        gate_id=settings["gate.id"],
        files=files,
        keys_dir=settings.keys_dir,
        hash_key_path=settings.key_path,
        default_port=settings["site.enrol_port"],
    )
    click.echo(
        f"Đã vào khu vực {joined.site_id} với tên cổng {joined.gate_id}. / "
        f"Joined site {joined.site_id} as gate {joined.gate_id}."
    )
    click.echo(f"Tệp của khu vực / site files: {files.folder}")
    if config_path is not None:
        write_site_settings(config_path, hub=joined.broker, folder=files.folder)
        click.echo(f"[site] hub = {joined.broker} -> {config_path}")
    else:
        click.echo(
            "Thêm vào tệp cấu hình / add to the settings file:\n"
            f'[site]\nhub = "{joined.broker}"\ndir = "{files.folder}"'
        )
    click.echo(
        "Cài đặt, danh sách chặn và danh sách tin cậy giờ do hub quản lý. / "
        "Settings, denylist and trust list are now managed on the hub."
    )
    click.echo(
        "Khởi động lại gatekiosk (kiosk và web) để dùng khoá băm của khu vực. / "
        "Restart gatekiosk (kiosk and web) so they hash with the site's key."
    )


@site.command("revoke")
@config_option
@click.argument("gate_id", metavar="GATE")
def site_revoke(config_path: Path | None, gate_id: str) -> None:
    """Shut a gate out of the site (a stolen or replaced gate): its
    certificate is revoked and the broker's ACL denies it everything.

    Example:

        gatekiosk site revoke main-gate && systemctl reload mosquitto
    """
    from kiosk.clock import SystemClock
    from kiosk.site.broker import BrokerConfig, write_broker_files
    from kiosk.site.enrolment import blocked_gate_ids, revoke_gate
    from kiosk.site.hub_setup import HubFolder

    settings = load(config_path)
    hub = HubFolder(settings.site_dir)
    description = hub.description()
    revoke_gate(hub.pki, gate_id, now=SystemClock().now())
    config = BrokerConfig.for_site(
        hub.broker_dir, hub.pki, description.site_id, port=description.broker_port
    )
    write_broker_files(config, blocked_gates=blocked_gate_ids(hub.pki))
    click.echo(f"Đã thu hồi cổng {gate_id}. / Revoked gate {gate_id}.")
    click.echo(
        "Nạp lại broker để áp dụng / reload the broker to apply it: systemctl reload mosquitto"
    )
