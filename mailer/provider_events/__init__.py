"""Provider events: the verified webhook batches, and applying their events to our records.

Provider-neutral: each provider's webhook module (``mailer/providers``) reads its posts into
``ProviderEvent`` objects, and this package applies them.

- ``batches``: a verified post stored as received, applied once by a worker, swept when lost;
- ``applying``: dedupe on the provider's event id, correlate to our delivery
  (``correlation``), advance its state (``transitions``), and tell the person's records
  (``people``: suppress hard bounces and spam complaints, withdraw consent on unsubscribes).
"""
