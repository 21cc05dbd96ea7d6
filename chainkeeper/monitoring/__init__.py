"""Chainkeeper monitoring stage."""
