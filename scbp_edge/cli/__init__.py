"""Thin typer CLI over the importable API."""
