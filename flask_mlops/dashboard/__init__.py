"""The /mlops dashboard: server-rendered pages, inline SVG charts, vendored static files.

Importing the package declares its pages on the API's blueprint (`api/blueprint.bp`).
"""

from . import views  # noqa: F401  (declares the pages)
