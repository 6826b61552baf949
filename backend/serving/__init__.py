"""Serving predictions: the one inference pipeline every predicting route runs (``pipeline``).

Framework-free, between the HTTP side that calls it and the model side, the releases and the
protection budgets it drives.
"""
