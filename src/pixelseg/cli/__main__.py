"""`python -m pixelseg.cli ...`, the same as `python -m pixelseg ...`."""
from pixelseg.cli.main import exit_process, main

if __name__ == "__main__":
    exit_process(main())
