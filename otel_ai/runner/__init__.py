"""``otel-ai run``: an experiment command under an ``ai.run`` span.

:class:`otel_ai.runner.supervisor.Supervisor` starts the command with the trace context
in its environment, copies its output to the terminal byte for byte while turning it into
log records (:mod:`.streams`), listens to what its Python processes report
(:mod:`.channel`), keeps a state file for crash recovery (:mod:`.state`), draws a status
line on a terminal (:mod:`.status`), and ends the run with the command's outcome.
"""
