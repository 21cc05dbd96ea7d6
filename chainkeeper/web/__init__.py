"""Chainkeeper web shell: server-rendered pages (Jinja2 + htmx).

The pages live in ``chainkeeper.web.pages`` (``router``, ``STATIC_DIR``), which the API
app includes; what a page shows comes from the service functions of the stages and of
``chainkeeper.chain`` (the overview). Importing this package imports nothing.
"""
