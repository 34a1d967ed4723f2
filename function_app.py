"""The Azure Functions app (Python v2 model): one blueprint per function folder."""

import azure.functions as func

from admit_patient import bp as admit_patient_bp
from bulk_import import bp as bulk_import_bp
from capability_statement import bp as capability_statement_bp
from discharge_patient import bp as discharge_patient_bp

app = func.FunctionApp()
app.register_functions(bulk_import_bp)
app.register_functions(admit_patient_bp)
app.register_functions(discharge_patient_bp)
app.register_functions(capability_statement_bp)
