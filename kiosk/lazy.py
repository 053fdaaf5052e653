"""Names of a package that load their module on first use.

The camera and decoder packages name every source and backend at the top,
but a command that reads no image must not load OpenCV, zxing-cpp or
picamera2 for it: each package maps a name to the module that defines it,
and Python's module ``__getattr__`` (PEP 562) imports that module the first
time the name is read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``modules`` maps a name to its
    module in the package; a value once loaded is kept in ``namespace``
    (the package's globals), so later reads skip the function."""

    def getattr_(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return getattr_
