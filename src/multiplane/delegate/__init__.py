"""Delegation to other CNI plugins (by exec today; in-process built-ins later)."""
