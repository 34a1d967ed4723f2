"""The Azure Functions app (Python v2 model): one blueprint per function folder."""

import azure.functions as func

from bulk_import import bp as bulk_import_bp

app = func.FunctionApp()
app.register_functions(bulk_import_bp)
