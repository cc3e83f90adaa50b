"""The opposition (suppression) list, unsubscribe tokens, and what they keep out of mail."""
