"""gatekiosk: an offline entry-gate kiosk.

Camera frames become decoded codes, codes become credentials, credentials
become decisions, decisions become event rows and then lights and a relay
pulse. See DESIGN in the README for the path of one scan.
"""

__version__ = "0.1.0"
