"""GET api/capacity: the network's beds, census and expected discharges (aggregates)."""

from capacity.function import blueprint

__all__ = ["blueprint"]
