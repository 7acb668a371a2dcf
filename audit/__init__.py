"""The `container-lock` command line: pin, check and audit container images in BitBake builds."""

from containerlock.version import tool_version

__version__ = tool_version()
