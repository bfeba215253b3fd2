"""Allows ``python -m rgfl``, the same as the ``rgfl`` console script."""

from rgfl.cli.main import main

if __name__ == "__main__":
    main()
