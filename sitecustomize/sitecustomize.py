"""respan-instrument's bootstrap: start tracing lazily, then run the app's own sitecustomize.

This folder is on PYTHONPATH only under ``respan-instrument``; it is never installed as a
top-level module. It must stay cheap: the real work waits until the app imports mistralai.
"""

import os
import sys


def _start_tracing():
    try:
        from respan_auto.bootstrap import start
    except ImportError:
        sys.stderr.write(
            f"respan-instrument: {sys.executable} cannot import respan_auto, so this program runs untraced; "
            "install respan-auto in the environment of that Python\n"
        )
        return
    start()


def _chain_user_sitecustomize():
    """Import the sitecustomize this folder shadows (the app's, or the distribution's)."""
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        import sitecustomize  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "sitecustomize":
            raise
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    finally:
        sys.path[:] = saved


_start_tracing()
_chain_user_sitecustomize()
