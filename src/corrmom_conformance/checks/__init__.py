"""The check families; importing this package selects the suite's Hypothesis profile."""

from corrmom_conformance.search_budget import load_profile

load_profile()
