"""Chainkeeper registry stage."""
