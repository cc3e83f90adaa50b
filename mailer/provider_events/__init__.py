"""Provider (SendGrid) events: the verified webhook batches, and applying them to our records.

- ``applying``: storing a verified batch; a worker applies it: dedupe on the provider's event
  id, correlate to our delivery, advance its state, suppress hard bounces and spam complaints,
  withdraw consent on provider unsubscribes.
"""
