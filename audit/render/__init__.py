"""How each command shows its result: rich tables for people, JSON (stable keys) for machines."""
