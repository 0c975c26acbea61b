"""fntrace's version, in a module of its own: the command (``fntrace --version``) and
the control server's greeting name it without importing the package's facade."""

__version__ = "0.1.0"
