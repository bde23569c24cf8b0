"""`spinenas dashboard`: a live web view of the results database (Dash; read-only).

`data` reads what the pages show into plain rows (no Dash), `figures` draws them with plotly, `app` lays the pages
out and wires the live updates; `nas.cli.commands.dashboard` serves it on loopback. Nothing here imports TensorFlow
or Ray.
"""
