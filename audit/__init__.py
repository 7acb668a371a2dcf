"""The `container-lock` command line: pin, check and audit container images in BitBake builds."""
