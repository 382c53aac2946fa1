"""Pictures: overlay.py (palettes, coloured label maps, overlays, legends), drawing.py (text and panels)."""
