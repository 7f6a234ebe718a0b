"""Test helpers shared by several test modules (import as `helpers.<module>`; tests/ is on sys.path)."""
