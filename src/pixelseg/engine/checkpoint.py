"""The checkpoint writers live with the run folder (pixelseg.run); kept importable here for older callers."""
from pixelseg.run import load_state, save_state, save_weights

__all__ = ["load_state", "save_state", "save_weights"]
