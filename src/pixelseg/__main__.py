"""`python -m pixelseg ...`, which is also how torchrun starts it: `torchrun --nproc-per-node N -m pixelseg train ...`."""
from pixelseg.cli import exit_process, main

if __name__ == "__main__":
    exit_process(main())
