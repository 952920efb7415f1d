# otel_ai bootstrap for Python children of `otel-ai run` (see otel_ai/bootstrap/__init__.py).
# It must never break the child: every failure is swallowed (shown with OTEL_AI_DEBUG=1).
import os
import sys


def _otel_ai_debug(message):
    if os.environ.get("OTEL_AI_DEBUG"):
        sys.stderr.write("otel_ai bootstrap: %s\n" % (message,))


def _otel_ai_chain():
    # run the sitecustomize this one shadows, as Python would have without us
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


try:
    _otel_ai_chain()
except Exception as exc:  # noqa: BLE001
    _otel_ai_debug("the shadowed sitecustomize failed: %r" % (exc,))

try:
    from otel_ai.bootstrap.startup import start as _otel_ai_start

    _otel_ai_start()
except Exception as exc:  # noqa: BLE001 - e.g. otel_ai not installed for this interpreter
    _otel_ai_debug("not started: %r" % (exc,))
