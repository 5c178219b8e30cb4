"""gpact: genetic-programming search for activation functions, scored out of distribution."""

__version__ = "0.1.0"
