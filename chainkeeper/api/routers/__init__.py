"""The API's routers, one module per area: health, jobs, registry, serving, governance."""
