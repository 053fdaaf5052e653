"""``python -m kiosk.cli``: the same as the ``gatekiosk`` console script."""

from kiosk.cli import main

main()
