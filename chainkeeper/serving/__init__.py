"""Chainkeeper serving stage."""
