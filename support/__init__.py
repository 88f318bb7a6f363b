"""Pieces the stages lean on, each beside the stage that uses it."""
