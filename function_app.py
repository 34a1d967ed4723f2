"""The Azure Functions app (Python v2 model): one blueprint per function folder, each bound
to the worker's parts (:class:`shared.composition.Services`, built here, once, and
only as the functions first use them)."""

import azure.functions as func

import admit_patient
import audit_report
import bulk_import
import capability_statement
import capacity
import capacity_patients
import capacity_view
import discharge_patient
import health
import model_report
import retrain_model
from shared.composition import Services


def build_app(services: Services) -> func.FunctionApp:
    """The app the host indexes, its functions bound to ``services``; tests build their own."""
    app = func.FunctionApp()
    for folder in (
        bulk_import,
        admit_patient,
        discharge_patient,
        capability_statement,
        retrain_model,
        health,
        model_report,
        capacity,
        capacity_patients,
        capacity_view,
        audit_report,
    ):
        app.register_functions(folder.blueprint(services))
    return app


services = Services()  # the worker's parts: nothing is read or built until first use
app = build_app(services)
