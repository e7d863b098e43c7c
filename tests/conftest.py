"""Shared pytest configuration (keep small; module-specific fixtures live in their modules)."""
