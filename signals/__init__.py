"""The pure health domain: account facts in, signals, score, band and drivers out. No I/O."""
