"""Whole nodes: halt one as a crashed host dies, boot it back."""
