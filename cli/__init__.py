"""The ``rgfl`` command line (installed as ``rgfl.cli``; the folder is ``cli/`` at the repo top)."""
