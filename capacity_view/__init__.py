"""GET api/capacity/view: the capacity view as a page the app serves itself."""

from capacity_view.function import blueprint

__all__ = ["blueprint"]
