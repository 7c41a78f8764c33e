"""What runs on the PYNQ board: accelerator driver, XNOR-popcount reference, measurements.

This package is copied to the board: it imports numpy only (pynq / finn-plus-driver lazily, on a board).
"""
