"""Calibration studies: does the proxy rank architectures like longer training (`study`), and the statistics
(`stats`: Kendall tau with its interval, seed CV)."""
