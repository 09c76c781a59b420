"""The error of a missing ngspice, importable without the runners (the command line catches it at start)."""

INSTALL_HINT = "install it: `apt-get install ngspice libngspice0 libngspice0-dev` (Debian) or run `make install`"


class NgspiceMissing(RuntimeError):
    """ngspice (or its shared library) is not installed."""
