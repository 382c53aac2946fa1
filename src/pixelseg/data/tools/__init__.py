"""Dataset tools: the doctor and its checks, convert, show, download, the labelling round trip (LabelMe) and
the built-in synthetic data."""
