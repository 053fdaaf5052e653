"""Several gates, one site: the pieces a gate and its hub share.

A *site* is one hub (the Mosquitto broker, ``gatekiosk hub`` and the admin
web) and the gates that talk to it over MQTT 5 and TLS. This package holds
the parts both sides need and that know nothing of the scan loop:

- :mod:`kiosk.site.pki`: the site's certificate authority, the gates' and
  the hub's certificates, and the revocation list that shuts out a stolen gate;
- :mod:`kiosk.site.topics`: the topic names, one place for both sides and the ACL;
- :mod:`kiosk.site.broker`: the Mosquitto configuration and ACL the hub runs with;
- :mod:`kiosk.site.documents`: signed, versioned documents the hub sends down
  (settings, denylist, revocations, trust list, public keys).

A gate with no ``[site]`` settings imports none of this.
"""

from kiosk.errors import GateError


class SiteError(GateError):
    """A site operation failed: a certificate, the broker's files, a document.

    The message says what to do; it never contains key material.
    """
