"""The error hierarchy: one base, few leaves.

Boundaries (the scan loop, the CLI, the web) catch these; nothing else does.
"""


class GateError(Exception):
    """Base of every error gatekiosk raises on purpose."""


class ConfigError(GateError):
    """Settings are missing, malformed or contradict each other.

    ``problems`` lists every problem found, so one start-up shows them all.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class CameraError(GateError):
    """A frame source cannot be opened or has stopped delivering."""


class DecoderError(GateError):
    """A QR decoder backend is unavailable or failed on a frame."""


class StoreError(GateError):
    """The event store cannot be opened, migrated or written."""


class DependencyMissing(GateError):
    """An optional library or system package is not installed.

    The message always says how to install it.
    """
