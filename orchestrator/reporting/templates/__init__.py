"""Packaged templates (the compliance report's HTML)."""
