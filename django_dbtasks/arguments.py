# Removed once every importer uses signatures.
from .signatures import as_names, bind, check_names, parameter_names, positional_names  # noqa: F401
