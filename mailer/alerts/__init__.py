"""Tender alerts: tenders, saved searches, matching, digest runs and the scheduler."""
