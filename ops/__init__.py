"""Commands run against a deployment, shipped with the project and documented for the people
who run them (not in the Functions package: they run from an administrator's machine or an
azd hook, with that person's identity):

- ``python -m ops.deploy_db``: the database step of the deploy (migrations, the app's
  user and grants), run by ``scripts/azure/postprovision.sh`` (site administrator);
- ``python -m ops.sql_script``: the same step as a T-SQL script for a database analyst;
- ``python -m ops.package``: the Functions package ``.funcignore`` declares (``scripts/deploy.sh``);
- ``python -m ops.import_queue``: the import queues, and replaying the poison queue (operator);
- ``python -m ops.model``: the model's report, retraining, rollback and promotion (data
  scientist).
"""
