"""Marketing campaigns: NouMa offers and partner offers, their audiences, batches and pacing."""
