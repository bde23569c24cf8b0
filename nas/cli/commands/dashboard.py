"""`spinenas dashboard`: a live web page of the results database, read-only, on loopback by default.

Dash, plotly and the web server are imported inside the command: the parser stays light. The database is opened
read-only (`open_reader`, as `top` opens it): safe while a search writes it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import Any

from nas.cli.ui import UserError, printable

#: The port the dashboard listens on unless --port says otherwise (Dash's usual one).
DEFAULT_PORT = 8050
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _bind(host: str, port: int, wsgi_app: Any) -> Any:
    """A threaded WSGI server listening on (host, port), or a one-line UserError (port in use, no such address).

    The socket is bound here and handed to Werkzeug, whose own bind prints its message and exits with code 1.
    """
    import socket

    from werkzeug.serving import LISTEN_QUEUE, make_server

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, OverflowError) as e:
        raise UserError(f"cannot listen on {host} port {port}: {getattr(e, 'strerror', None) or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Werkzeug's own; a listener still refuses
        sock.bind(address)
        sock.listen(LISTEN_QUEUE)
        return make_server(host, sock.getsockname()[1], wsgi_app, threaded=True, fd=sock.fileno())
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (--port N chooses another; --port 0 any free one)") \
                from None
        raise UserError(f"cannot listen on {host} port {port}: {e.strerror or e}") from None
    finally:
        sock.close()  # the server listens on its own duplicate of the socket


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from nas.cli.commands.common import open_reader

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535 (0: any free port), got {args.port}")
    if not 0.2 <= args.refresh <= 60:
        raise UserError(f"--refresh must be 0.2..60 seconds, got {args.refresh:g}")
    # Werkzeug logs every request at INFO with a handler of its own when none takes INFO: only with --verbose.
    logging.getLogger("werkzeug").setLevel(logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    runs = args.runs if args.runs is not None else ("runs" if os.path.isdir("runs") else None)
    with open_reader(args.db) as reader:
        if args.search is not None:
            reader.open_search(args.search)  # an unknown name: one line listing the known ones
        from nas.dashboard.app import build_app
        from nas.dashboard.data import DashboardData, warm_up

        data = DashboardData(reader, runs=os.path.abspath(runs) if runs else None, db_arg=args.db)
        app = build_app(data, search=args.search, refresh_s=args.refresh)
        server = _bind(args.host, args.port, app.server)
        try:
            url = _url(args.host, server.port)
            print(printable(f"spinenas dashboard: {url} (database {reader.display_url}, read-only; refreshes every "
                            f"{args.refresh:g} s); Ctrl-C stops it"), flush=True)
            if args.host not in _LOOPBACK:
                print(f"spinenas dashboard: listening on {args.host}, not only this machine: anyone who reaches the "
                      "port sees the database (the page has no login)", file=sys.stderr, flush=True)
            warm_up()
            server.serve_forever()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (main exits 143 then): the way a dashboard ends
            pass
        finally:
            server.server_close()
    return 0


def register(sub: Any) -> None:
    """Adds `dashboard` to the `spinenas` subcommands."""
    from results_db.url import DB_HELP

    p = sub.add_parser(
        "dashboard",
        help="a live web page of the searches: trials, curves, decisions, calibration",
        description="Serve a live web page of the results database (read-only; safe while searches write it): the "
        "searches with their budget, trials per status, best reward, trial time and controller updates; a "
        "sortable, filterable table of all trials; every trial's learning curve coloured by status with the "
        "scheduler's rungs and cuts; best reward against trial-seconds for one or several searches; parallel "
        "coordinates of the architectures' decisions coloured by reward and which decisions matter (a random "
        "forest's permutation importance); a page per trial (diagram, curve, metrics, config, log, export "
        "command); and the calibration studies (tau per rung with its interval, seed CV, the variants' cost "
        "against tau). It refreshes every --refresh seconds without a reload, and needs no network (its "
        "JavaScript comes with the installed packages). Listens on 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--search", metavar="NAME", help="the search shown first (default: the newest)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every "
                        "interface, e.g. on a cluster's head node behind an SSH tunnel)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"the port (default {DEFAULT_PORT}; 0: any free one, printed with the URL)")
    p.add_argument("--runs", metavar="DIR",
                   help="the folder of the searches' run folders, for a trial's log (DIR/NAME/search.log; "
                        "default: runs, if it exists here)")
    p.add_argument("--refresh", type=float, default=2.0, metavar="S",
                   help="seconds between two reads of the database (default 2)")
    p.set_defaults(func=_cmd_dashboard)
