"""The length-of-stay model: what a stay's features are, training, evaluation, the artifact
format, loading and scoring. The one place a data scientist looks.

    python -m ops.model train --out models/            # reads PatientData via SQL_CONNECTION_STRING

Training writes two files: ``los-model.json`` (XGBoost's JSON model: loading it parses JSON
and can run no code, unlike a pickle) and ``model-card.json``. ``LOS_MODEL_URL`` points the
functions at the model file; they score admissions and bulk imports with it.
"""
