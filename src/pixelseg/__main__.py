"""`python -m pixelseg ...`, which is also how torchrun starts it: `torchrun --nproc-per-node N -m pixelseg train ...`."""
import sys

from pixelseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
