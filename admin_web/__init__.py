"""The admin web: managers and guards see, search and export the gate log.

Built in its own issue; it reads and writes only through ``kiosk.store``.
"""
