"""retrain_model: the timer that retrains the length-of-stay model (champion/challenger)."""

from retrain_model.function import blueprint

__all__ = ["blueprint"]
