"""``composer serve``: the web page and its HTTP API. ``api`` (requests and their bounds,
torch-free), ``service`` (models loaded once, work in isolated processes), ``connections``
(connection caps and deadlines) and ``app`` (the Starlette app and uvicorn)."""
