"""The project's exception types: each carries a message a user can act on."""


class GpactError(Exception):
    """Base class; the CLI prints these as one line and exits with status 2."""


class GrammarError(GpactError):
    """A grammar file or primitive is invalid."""


class FormulaError(GpactError):
    """A formula cannot be parsed or does not fit the grammar."""


class ConfigError(GpactError):
    """A run configuration is invalid or incompatible."""
