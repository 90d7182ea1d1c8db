"""Measures of this family are added here."""

MEASURES: tuple = ()
