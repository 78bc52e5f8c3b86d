"""The /mlops dashboard: server-rendered pages, inline SVG charts, vendored static files."""
