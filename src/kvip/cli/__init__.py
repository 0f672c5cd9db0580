"""The `kvip` command line: argument parsing and hand-over to the agent, the controller, the
operator tools (`status`, `audit`), manifests and the lab. No product logic lives here.
"""
