"""E-mail providers: the backends that send a message, and the webhooks that report what became of it."""
