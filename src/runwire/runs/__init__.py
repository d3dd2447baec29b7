"""Runs: storing a user message with its run, scheduling, executing and ending runs.

The gateway and the REST API are thin edges over :class:`runwire.runs.service.RunService`.
Never imports the gateway, the REST API or the web page.
"""
