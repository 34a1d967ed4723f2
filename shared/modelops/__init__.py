"""Model operations: the use case behind the ``retrain_model`` timer, ``GET api/model`` and
``python -m ops.model`` (:mod:`shared.modelops.operations`)."""
