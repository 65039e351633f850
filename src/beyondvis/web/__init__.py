"""The beyondvis web app (``beyondvis serve``): photo to recipe, and visual search, in a browser.

``create_app(cook, search, config)`` builds the ASGI app around models loaded once
(:class:`CookService`, :class:`SearchService`); ``serve`` runs it with uvicorn.
"""

from beyondvis.web.app import WebConfig, create_app
from beyondvis.web.services import CookService, SearchService, ServiceError

__all__ = ["CookService", "SearchService", "ServiceError", "WebConfig", "create_app"]
