"""One module per `container-lock` command: its options, inputs and exit status.

The work itself lives in the command's logic module (`audit.update`, `audit.verify`, …) and
what it shows in `audit.render`.
"""
