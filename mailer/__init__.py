"""NouMa Mailer: consent-gated, audited e-mail for NouMa's tender alerts and offers."""

__version__ = "0.1.0"
