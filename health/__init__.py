"""The ``health`` function: GET api/health → whether each part the functions need answers."""

from health.function import blueprint

__all__ = ["blueprint"]
