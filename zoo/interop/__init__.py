"""Converters between zoo models and other libraries' formats."""
