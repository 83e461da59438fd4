"""Flood command: the entry point.

- `python app.py` starts everything on one machine (command/runtime/supervisor.py): a real Redis
  (embedded unless REDIS_URL is set), the live rule engine, the drill runner (which replays the sample
  scenario as an exercise), an RQ worker and the web server (gunicorn, several workers) on
  http://127.0.0.1:8050 unless --port/PORT says otherwise; it stops them all on Ctrl-C or SIGTERM and
  leaves no process behind.
- `gunicorn 'app:create_server()'` is the web server (REDIS_URL in the environment).
- `app.create_app` is the Dash app factory (layouts/shell.py; sign-in is layouts/signin.py).
"""

from __future__ import annotations

import sys

import flask

from layouts.shell import create_app
from layouts.signin import secret_key

__all__ = ["create_app", "create_server", "main"]


def create_server() -> flask.Flask:
    """For gunicorn: `gunicorn 'app:create_server()'` (REDIS_URL in the environment)."""
    import gc

    server = create_app().server
    # the app's own objects live as long as the worker: keep them out of every garbage collection,
    # which otherwise walks them all every few map callbacks (the map's p95, docs/performance.md)
    gc.collect()
    gc.freeze()
    return server


def _feeds_enabled() -> bool:
    """Is any live source switched on in feeds.yaml? A broken file is reported by the feeds process."""
    from feeds.runner import FeedConfigError, build_sources, load_config

    try:
        return bool(build_sources(load_config()))
    except FeedConfigError:
        return True


def main(argv: list[str] | None = None) -> int:
    from command.runtime import supervisor

    return supervisor.main(argv, prepare_web=secret_key, feeds_enabled=_feeds_enabled)


if __name__ == "__main__":
    sys.exit(main())
