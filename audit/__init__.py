"""The `container-lock` command line: pin, check and audit container images in BitBake builds."""

__version__ = "0.1.0"
