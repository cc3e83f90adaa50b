"""The rights NouMa's privacy policy gives people, exercised by the support desk.

``access.py`` (everything held on a person, as JSON and as a readable page), ``opposition.py``
(never mail them again, never show them as a tender contact), ``rectification.py`` (a new
address, the history kept) and ``erasure.py`` (every clear copy of the address, name, IPs and
user agents gone; the suppression hash and a pseudonymised trail stay). Each request is recorded
in ``rights_requests`` (``models.py``), keyed by address hash.
"""
