"""The command line (`pixelseg`, `python -m pixelseg`): one module per group of commands, each parser beside
its handler; main.py orders them. The entry point is `pixelseg.cli:main`."""
from pixelseg.cli.main import build_parser, exit_process, main

__all__ = ["build_parser", "exit_process", "main"]
