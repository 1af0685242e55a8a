"""`python -m kdsnn` is the same as the `kdsnn` command (and works under torchrun)."""

from kdsnn.cli import main

if __name__ == "__main__":
    main()
