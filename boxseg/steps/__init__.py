"""One module per workflow step: read the step's files, call the package's pure functions,
write the outputs atomically (``atomic``), so a failed job leaves nothing that looks done.

``workflow_scripts/`` call these through ``workflow.run_step``; the tests call them too.
"""
