"""The ``model_report`` function: GET api/model → the champion's card, live accuracy and drift."""

from model_report.function import blueprint

__all__ = ["blueprint"]
