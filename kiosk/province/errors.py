"""The province's errors: the CLI shows them as ``Error: ...`` (they are GateErrors)."""

from kiosk.errors import GateError


class ProvinceError(GateError):
    """The province server refused or is set up wrongly for this request."""
